"""The shared method base: metrics, the source loss, optimiser groups."""

from __future__ import annotations

import functools

import pytest
import torch

from transferlab.methods.accuracy import accuracy_metrics
from transferlab.methods.supervised import SupervisedModule
from transferlab.nets import resnet20


def test_top1_and_top5_accuracy_on_known_logits():
    metrics = accuracy_metrics(10, "val/")
    logits = torch.zeros(4, 10)
    logits[0, 3] = 5  # top-1 right
    logits[1, :6] = torch.arange(6, 0, -1).float()  # label 4 is 5th best: top-5 right, top-1 wrong
    logits[2, :6] = torch.arange(6, 0, -1).float()  # label 5 is 6th best: both wrong
    logits[3, 1] = 5  # top-1 wrong, label 0 ties the rest
    result = metrics(logits, torch.tensor([3, 4, 5, 0]))
    assert result["val/acc"].item() == pytest.approx(0.25)
    assert result["val/acc_top5"].item() == pytest.approx(0.5)
    assert set(accuracy_metrics(5, "x/").keys()) == {"x/acc"}  # top-5 of five classes says nothing


def test_supervised_loss_is_cross_entropy_with_label_smoothing():
    torch.manual_seed(0)
    module = SupervisedModule(resnet20(num_classes=3), label_smoothing=0.2).eval()
    images, labels = torch.randn(5, 3, 16, 16), torch.tensor([0, 1, 2, 1, 0])
    terms, logits, _ = module.training_loss((images, labels))
    log_p = logits.log_softmax(1)
    smoothed = torch.full((5, 3), 0.2 / 3).scatter_add(1, labels[:, None], torch.full((5, 1), 0.8))
    assert torch.allclose(terms["loss"], -(smoothed * log_p).sum(1).mean(), atol=1e-6)


def test_norm_and_bias_parameters_get_no_weight_decay_and_every_parameter_is_optimised():
    net = resnet20(num_classes=3)
    optimizer = functools.partial(torch.optim.SGD, lr=0.1, weight_decay=5e-4)
    module = SupervisedModule(net, optimizer=optimizer)
    opt = module.configure_optimizers()
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["net"]["weight_decay"] == 5e-4 and groups["net_norm_bias"]["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in groups["net"]["params"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
