"""The reversal coefficient as the adversarial modules apply it, read from the gradients: the
features receive −c·(the gradient the domain loss would give them without the reversal), c the
module's scheduled coefficient (Ganin's c(p) = 2/(1 + exp(−γp)) − 1; MDD's scaled to 0.1, as the
reference library's warm-start layer), while the adversary itself descends the plain loss."""

from __future__ import annotations

import math

import pytest
import torch

from transferlab.methods.adaptation.cdan import CDANModule
from transferlab.methods.adaptation.dann import DANNModule
from transferlab.methods.adaptation.mdd import MDDModule
from transferlab.nets.resnet import resnet8

PROGRESS = 0.25


def expected_coefficient(scale: float = 1.0, gamma: float = 10.0) -> float:
    return scale * (2.0 / (1.0 + math.exp(-gamma * PROGRESS)) - 1.0)


MODULES = {
    "dann": (lambda net: DANNModule(net, discriminator_dropout=0.0, discriminator_hidden=16), 1.0),
    "cdan": (lambda net: CDANModule(net, discriminator_dropout=0.0, discriminator_hidden=16), 1.0),
    "cdan_e": (
        lambda net: CDANModule(
            net, discriminator_dropout=0.0, discriminator_hidden=16, entropy_conditioning=True
        ),
        1.0,
    ),
    "mdd": (lambda net: MDDModule(net, head_dropout=0.0, head_width=16), 0.1),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_the_features_gradient_is_minus_c_times_the_plain_one_and_the_adversarys_is_plain(name):
    torch.manual_seed(0)
    build, scale = MODULES[name]
    module = build(resnet8(num_classes=3)).double()
    module.progress = lambda: PROGRESS  # the schedule's input; c comes from the module itself
    module.log_dict = lambda *args, **kwargs: None  # no trainer here
    g = torch.Generator().manual_seed(1)
    f_s, f_t = (torch.randn(6, module.net.feature_dim, generator=g, dtype=torch.float64) for _ in range(2))
    logits_s, logits_t = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(2))
    adversary = list(module.domain_adversarial.parameters())

    def gradients(loss_of) -> tuple[torch.Tensor, list[torch.Tensor]]:
        source = f_s.clone().requires_grad_(True)
        loss = loss_of(source)
        grads = torch.autograd.grad(loss, [source, *adversary])
        return grads[0], list(grads[1:])

    trained_features, trained_adversary = gradients(
        lambda source: module.alignment_loss(source, f_t, logits_s, logits_t)
    )
    # the same loss with the reversal turned into the identity (R_{−1}: gradient × +1)
    plain_features, plain_adversary = gradients(
        lambda source: module.adversarial_loss(source, f_t, logits_s, logits_t, -1.0)[0]
    )
    c = expected_coefficient(scale)
    assert plain_features.abs().sum() > 0
    torch.testing.assert_close(trained_features, -c * plain_features, rtol=1e-9, atol=1e-12)
    for trained, plain in zip(trained_adversary, plain_adversary, strict=True):
        torch.testing.assert_close(trained, plain, rtol=1e-9, atol=1e-12)
