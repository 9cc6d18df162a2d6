"""DANN: gradient reversal, the warm-up c(p), the domain pair, and what training may not see."""

from __future__ import annotations

import math
import pickle

import hydra
import pytest
import torch
from lightning.pytorch import Callback

from conftest import PAIR, with_overrides
from transferlab.data import DigitsDataModule, DomainPairDataModule, SyntheticDataModule
from transferlab.losses.domain import GradientReversal, reversal_warmup
from transferlab.methods.schedulers import AnnealedLR, annealed_lr_factor
from transferlab.train import train
from transferlab.utils.errors import ConfigError, DataError

# DANN on the quick pair, at the default learning rate, with a small discriminator
DANN = [
    *with_overrides(PAIR, "+trainer.limit_train_batches=4", "method.optimizer.lr=0.01"),
    "method=dann",
    "+trainer.limit_test_batches=2",
    "method.discriminator_hidden=64",
]


def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward():
    x = torch.randn(4, 3, requires_grad=True)
    upstream = torch.randn(4, 3)
    y = GradientReversal(0.7)(x)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.7 * upstream)


def test_grl_schedule_starts_at_zero_and_tends_to_one():
    assert reversal_warmup(0.0) == 0.0
    assert reversal_warmup(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1) and reversal_warmup(1.0) > 0.999
    values = [reversal_warmup(p / 10) for p in range(11)]
    assert values == sorted(values)
    assert annealed_lr_factor(0.0) == 1.0 and annealed_lr_factor(1.0) == pytest.approx(1 / 11**0.75)


def test_annealed_lr_follows_the_formula_and_saves_plain_state():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = AnnealedLR(optimizer, total_steps=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / (1 + 10 * 0.5) ** 0.75)
    assert all(isinstance(v, (int, float, list, bool, type(None))) for v in scheduler.state_dict().values())


def test_a_dann_run_reports_source_and_target_accuracy(fast_cfg):
    summary = train(fast_cfg(*DANN))
    final = summary["final"]
    for name in ("test/acc", "test/source_acc", "val/acc", "val/target_acc", "train/domain_acc", "train/ce"):
        assert 0 <= final[name] <= 1 or name == "train/ce", name
    assert final["train/reversal_coefficient"] > 0


class RecordCoefficient(Callback):
    def __init__(self, stop_after_epoch: int | None = None) -> None:
        self.by_step: dict[int, float] = {}
        self.stop_after_epoch = stop_after_epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.by_step[trainer.global_step] = pl_module.reversal_coefficient()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.stop_after_epoch:
            trainer.should_stop = True


def test_the_schedule_is_restored_after_resume(fast_cfg, tmp_path):
    straight = RecordCoefficient()
    train(fast_cfg(*DANN, "trainer.max_epochs=2", output_dir=tmp_path / "a"), extra_callbacks=[straight])
    interrupted = RecordCoefficient(stop_after_epoch=0)
    train(fast_cfg(*DANN, "trainer.max_epochs=2", output_dir=tmp_path / "b"), extra_callbacks=[interrupted])
    resumed = RecordCoefficient()
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    train(fast_cfg(*DANN, "trainer.max_epochs=2", f"ckpt_path={last}", output_dir=tmp_path / "c"), [resumed])
    assert min(resumed.by_step) == 4  # picked up after the first epoch's four steps
    for step, value in resumed.by_step.items():
        assert value == pytest.approx(straight.by_step[step])
    assert straight.by_step[0] == 0.0 and straight.by_step[7] > straight.by_step[4] > 0


class ScrambleTargetLabels(Callback):
    scrambled = 0

    def setup(self, trainer, pl_module, stage) -> None:
        labels = trainer.datamodule.target.datasets["train"].labels
        labels.copy_((labels + 1) % 10)  # no random draw: the RNG streams must stay the same
        self.scrambled += len(labels)


def test_target_labels_never_reach_training(fast_cfg, tmp_path):
    deterministic = [*DANN, "trainer.deterministic=true", "method.discriminator_dropout=0"]
    clean = train(fast_cfg(*deterministic, output_dir=tmp_path / "a"))
    scrambled = train(
        fast_cfg(*deterministic, output_dir=tmp_path / "b"), extra_callbacks=[ScrambleTargetLabels()]
    )
    a = torch.load(clean["best"]["last_ckpt_path"], weights_only=True)["state_dict"]
    b = torch.load(scrambled["best"]["last_ckpt_path"], weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bitwise: the labels changed nothing


def test_the_training_batch_holds_target_images_only(fast_cfg):
    cfg = fast_cfg(*DANN)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))[0]
    assert isinstance(batch["target"], torch.Tensor) and batch["target"].ndim == 4
    assert len(batch["source"]) == 2


def test_domains_with_different_classes_are_refused_naming_them():
    pair = DomainPairDataModule(
        DigitsDataModule(classes=["1", "2", "3"]), DigitsDataModule(classes=["1", "2", "7"])
    )
    with pytest.raises(DataError, match=r"only in the source: \['3'\]; only in the target: \['7'\]"):
        pair.setup()
    cifar_like = DomainPairDataModule(SyntheticDataModule(num_classes=3), SyntheticDataModule(num_classes=4))
    with pytest.raises(DataError, match=r"only in the target: \['class_3'\]"):
        cifar_like.setup()


def test_a_target_without_a_test_split_is_refused(tmp_path):
    from conftest import write_image_tree
    from transferlab.data import ImageFolderDataModule

    root = write_image_tree(tmp_path / "target", {"class_0": 4, "class_1": 4}, splits=("train",))
    pair = DomainPairDataModule(
        SyntheticDataModule(num_classes=2), ImageFolderDataModule(root=str(root), val_fraction=0.25)
    )
    with pytest.raises(DataError, match=r"target domain: .*has no 'test' folder"):
        pair.setup()


def test_negative_lambda_is_refused(fast_cfg):
    cfg = fast_cfg(*DANN, "method.lam=-1")
    with pytest.raises(ConfigError, match=r"method.lam=-1 must be >= 0"):
        train(cfg)


def test_a_negative_gamma_is_refused_rather_than_turning_the_reversal_around(fast_cfg):
    assert reversal_warmup(0.5, gamma=-10) < 0  # what a negative γ would do: c < 0
    with pytest.raises(
        ConfigError, match=r"method.gamma=-10 must be >= 0: a negative γ makes c\(p\) negative"
    ):
        train(fast_cfg(*DANN, "method.gamma=-10"))


def test_the_method_pickles_for_ddp_spawn(fast_cfg):
    cfg = fast_cfg(*DANN)
    net = hydra.utils.instantiate(cfg.net, num_classes=10)
    module = hydra.utils.instantiate(cfg.method, _partial_=True)(net=net)
    clone = pickle.loads(pickle.dumps(module))
    assert (
        clone.lam == module.lam and clone.domain_adversarial.discriminator[0].in_features == net.feature_dim
    )


def test_eval_of_a_dann_checkpoint_reports_the_target_accuracy(fast_cfg, tmp_path):
    from conftest import compose_config
    from transferlab.eval import evaluate
    from transferlab.nets.reference import build_net
    from transferlab.utils.checkpoint import open_checkpoint

    cfg = fast_cfg(*DANN)
    trained = train(cfg)
    eval_cfg = compose_config([f"ckpt_path={trained['best']['ckpt_path']}"], tmp_path / "eval", "eval")
    evaluated = evaluate(eval_cfg)
    # eval runs the whole test splits (training's test was limited to two batches): the target's
    # as test/acc, the source's as test/source_acc, each what the checkpoint's net gets on it
    net = build_net(open_checkpoint(trained["best"]["ckpt_path"], "ckpt_path")).eval()
    pair = hydra.utils.instantiate(cfg.data)
    pair.setup("test")
    for name, domain in (("test/acc", pair.target), ("test/source_acc", pair.source)):
        with torch.no_grad():
            hits = [(net(x).argmax(1) == y).sum().item() for x, y in domain.test_dataloader()]
        accuracy = sum(hits) / len(domain.datasets["test"])
        assert evaluated["final"][name] == pytest.approx(accuracy, abs=1e-6), name
