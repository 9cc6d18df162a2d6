"""Distillation: the KD loss against its formula, the frozen teacher, logit caching, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from conftest import FAST, build_module, compose_config
from transferlab.losses.distillation.base import DistillationInputs
from transferlab.losses.distillation.fitnets import HintLoss
from transferlab.losses.distillation.kd import KDLoss, kd_divergence
from transferlab.methods.distill import DistillModule
from transferlab.train import train
from transferlab.utils.entry import user_errors
from transferlab.utils.errors import CheckpointError


# --- the loss --------------------------------------------------------------------------------------
def test_kd_is_zero_when_student_and_teacher_agree():
    logits = torch.randn(6, 10)
    assert kd_divergence(logits, logits.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_value_and_gradient_match_the_formula():
    torch.manual_seed(0)
    student, teacher, t = torch.randn(5, 7, requires_grad=True), torch.randn(5, 7), 2.5
    labels = torch.zeros(5, dtype=torch.long)
    loss = KDLoss(t)(DistillationInputs(labels, student_logits=student, teacher_logits=teacher))
    p_s, p_t = (student / t).softmax(1), (teacher / t).softmax(1)
    expected = t**2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert torch.allclose(student.grad, t * (p_s - p_t).detach() / 5, atol=1e-6)


def test_with_t_squared_the_gradient_keeps_its_size_across_temperatures():
    torch.manual_seed(0)
    student, teacher = torch.randn(64, 10), torch.randn(64, 10)
    norms, unscaled = {}, {}
    for t in (1.0, 2.0, 4.0, 8.0, 16.0):
        s = student.clone().requires_grad_(True)
        kd_divergence(s, teacher, t).backward()
        norms[t] = s.grad.norm().item()
        unscaled[t] = norms[t] / t**2  # the gradient of KL alone
    assert max(norms.values()) / min(norms.values()) < 3  # same order of magnitude
    assert unscaled[1.0] / unscaled[16.0] > 100  # what T² compensates
    # large T: ∂L/∂s -> (s - t)/(K·N) for zero-mean logits
    s0, t0 = (x.double() - x.double().mean(1, keepdim=True) for x in (student, teacher))
    s = s0.clone().requires_grad_(True)
    kd_divergence(s, t0, 1000.0).backward()
    assert torch.allclose(s.grad, (s0 - t0) / (10 * 64), rtol=0, atol=2e-5)  # entries are ~1e-3


def test_hint_loss_regresses_student_features_onto_the_teachers():
    hint = HintLoss()
    hint.build(student_dim=4, teacher_dim=6)
    assert isinstance(hint.regressor, torch.nn.Linear)
    fs, ft = torch.randn(3, 4, requires_grad=True), torch.randn(3, 6)
    value = hint(DistillationInputs(torch.zeros(3), student_features=fs, teacher_features=ft))
    residual = hint.regressor(fs) - ft
    assert torch.allclose(value, residual.pow(2).mean())
    value.backward()  # ∂/∂f_s = 2·Wᵀ(r(f_s) − f_t)/(N·D_t)
    assert torch.allclose(
        fs.grad, 2 * residual.detach() @ hint.regressor.weight.detach() / (3 * 6), atol=1e-6
    )
    same = HintLoss()
    same.build(5, 5)
    assert isinstance(same.regressor, torch.nn.Identity)


def test_bad_temperatures_and_weights_are_refused_by_the_loss():
    with pytest.raises(ValueError, match="must be > 0"):
        KDLoss(0.0)
    with pytest.raises(ValueError, match=r"lam=-1 must be >= 0"):
        HintLoss(lam=-1)


# --- the method ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    """A resnet8x4 teacher trained two epochs on four synthetic classes."""
    out = tmp_path_factory.mktemp("teacher")
    train(compose_config([*FAST, "trainer.max_epochs=2"], out))
    return out


def student_cfg(fast_cfg, teacher: Path | str, *overrides: str, output_dir: Path | None = None):
    """KD (``distill=kd``) unless the overrides pick another recipe."""
    recipe = [] if any(o.startswith("distill=") for o in overrides) else ["distill=kd"]
    return fast_cfg(
        "method=distill",
        *recipe,
        "net=resnet8",
        f"method.teacher_ckpt={teacher}",
        *overrides,
        output_dir=output_dir,
    )


def build_student(cfg) -> tuple[DistillModule, object]:
    return build_module(cfg)


def test_the_teacher_is_frozen_unchanged_and_left_out_of_the_student(fast_cfg, teacher_run):
    cfg = student_cfg(fast_cfg, teacher_run, "trainer.max_epochs=2")
    summary = train(cfg)
    teacher_state = torch.load(next((teacher_run / "checkpoints").glob("epoch_*.ckpt")), weights_only=True)
    saved = torch.load(summary["best"]["last_ckpt_path"], weights_only=True)["state_dict"]
    assert not any(k.startswith("teacher.") for k in saved)  # the student's checkpoint is the student
    assert "train/kd" in summary["final"] and "train/teacher_agreement" in summary["final"]
    # the teacher's accuracy on the student's test split is the teacher run's own test accuracy
    teacher_metrics = json.loads((teacher_run / "metrics.json").read_text())["final"]
    assert summary["final"]["test/teacher_acc"] == pytest.approx(teacher_metrics["test/acc"], abs=1e-6)

    module, _ = build_student(cfg)
    assert all(not p.requires_grad for p in module.teacher.parameters())
    optimised = {id(p) for g in module.parameter_groups() for p in g["params"]}
    assert not optimised & {id(p) for p in module.teacher.parameters()}
    # teacher weights and BatchNorm statistics after training equal the teacher checkpoint's
    module.train()
    assert not module.teacher.training and not any(m.training for m in module.teacher.modules())
    for key, value in module.teacher.module.state_dict().items():
        assert torch.equal(value, teacher_state["state_dict"][f"net.{key}"]), key


def test_teacher_bn_statistics_do_not_move_during_training_steps(fast_cfg, teacher_run):
    module, datamodule = build_student(student_cfg(fast_cfg, teacher_run))
    before = {k: v.clone() for k, v in module.teacher.module.state_dict().items()}
    module.train()
    optimizer = torch.optim.SGD([p for g in module.parameter_groups() for p in g["params"]], lr=0.1)
    for images, labels in datamodule.train_dataloader():
        terms, _, _ = module.training_loss((images, labels))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    for key, value in module.teacher.module.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("member", ["kd", "pkt"])  # logits; pooled features
def test_cached_teacher_outputs_give_the_same_loss_as_the_live_teacher(fast_cfg, teacher_run, member):
    overrides = ["method.teacher_input=clean", "method.cache_teacher_logits=true"]
    if member != "kd":
        overrides.append(f"+method/distill_loss@method.losses.{member}={member}")
    module, datamodule = build_student(student_cfg(fast_cfg, teacher_run, *overrides))
    dataset = datamodule.clean_train_dataset()
    kept = ("logits", "features") if member != "kd" else ("logits",)
    module.clean_teacher = module.compute_clean_outputs(dataset, kept)
    positions = torch.arange(8)
    images = torch.stack([dataset[i][0] for i in range(8)])
    labels = torch.stack([dataset[i][1] for i in range(8)])
    module.eval()
    cached_terms, _, _ = module.training_loss((images, labels, positions))
    module.teacher_input = "augmented"  # the live teacher on the same (clean) images
    live_terms, _, _ = module.training_loss((images, labels))
    assert torch.allclose(cached_terms[member], live_terms[member], atol=1e-5)
    assert torch.allclose(cached_terms["loss"], live_terms["loss"], atol=1e-5)


def test_teacher_logits_are_cached_on_disk_and_reused_across_runs(fast_cfg, teacher_run, tmp_path):
    overrides = ["method.teacher_input=clean", "method.cache_teacher_logits=true"]
    first = train(student_cfg(fast_cfg, teacher_run, *overrides, output_dir=tmp_path / "a"))
    cache_files = list((tmp_path / "a" / "logs" / "cache" / "teacher_logits").glob("*.pt"))
    assert len(cache_files) == 1
    kept = torch.load(cache_files[0], weights_only=True)
    assert set(kept) == {"logits"} and kept["logits"].shape == (116, 4)  # a row per training image
    stamp = cache_files[0].stat().st_mtime_ns
    second_cfg = student_cfg(fast_cfg, teacher_run, *overrides, "seed=1", output_dir=tmp_path / "b")
    second_cfg.paths.log_dir = str(tmp_path / "a" / "logs")  # the same sweep's cache
    second = train(second_cfg)
    assert cache_files[0].stat().st_mtime_ns == stamp  # read, not rewritten
    assert first["global_step"] == second["global_step"] > 0


def test_a_pipeline_trains_the_teacher_stage_with_its_own_net(fast_cfg):
    cfg = fast_cfg(
        "method=distill",
        "distill=kd",
        "net=resnet8",
        "pretrain=synthetic",
        "pretrain.data.image_size=16",
        "+pretrain.net={_target_: transferlab.nets.resnet8x4}",
        "pretrain.pass_to=method.teacher_ckpt",
    )
    summary = train(cfg)
    (manifest,) = Path(cfg.paths.cache_dir).glob("pretrain/*/checkpoints/manifest.json")
    assert '"_target_": "transferlab.nets.resnet8x4"' in manifest.read_text()
    assert "train/kd" in summary["final"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.losses.kd.temperature=0"], r"method.losses.kd: temperature=0 must be > 0 \(try 4\)"),
        (["method.losses.kd.lam=-0.1"], r"method.losses.kd: lam=-0.1 must be >= 0"),
        (["method.ce_weight=-1"], r"method.ce_weight=-1 must be >= 0"),
        (["method.cache_teacher_logits=true"], r"needs method.teacher_input=clean"),
        (
            ["method.teacher_input=clean", "+method/distill_loss@method.losses.at=at"],
            r"method.teacher_input=clean keeps .* method.losses \['at'\] read its feature maps",
        ),
        (["data.num_classes=3"], r"teacher_ckpt=.* it predicts 4 classes and this run's data has 3"),
    ],
    ids=["temperature", "lam", "ce-weight", "cache-augmented", "clean-features", "class-count"],
)
def test_bad_input_is_refused_in_one_line(fast_cfg, teacher_run, capsys, overrides, message):
    with pytest.raises(SystemExit) as exit_info, user_errors():
        build_student(student_cfg(fast_cfg, teacher_run, *overrides))
    assert exit_info.value.code == 1
    printed = capsys.readouterr().err
    assert printed.count("\n") == 1 and printed.startswith("error: "), printed
    assert re.search(message, printed), printed


def test_a_missing_teacher_checkpoint_is_a_clear_error(fast_cfg, tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: method.teacher_ckpt="):
        build_student(student_cfg(fast_cfg, tmp_path / "no_teacher.ckpt"))


@pytest.mark.parametrize("recipe", ["at", "sp", "pkt", "rkd", "dkd", "crd", "crd_kd", "fitnets"])
def test_every_distillation_recipe_trains_with_its_weights(fast_cfg, teacher_run, recipe):
    cfg = student_cfg(fast_cfg, teacher_run, f"distill={recipe}", "method.teacher_input=augmented")
    final = train(cfg)["final"]
    member = {"crd_kd": "crd", "fitnets": "fitnets"}.get(recipe, recipe)
    weights = {name: node.lam for name, node in cfg.method.losses.items()}
    expected = cfg.method.ce_weight * final["train/ce"] + sum(
        w * final[f"train/{n}"] for n, w in weights.items()
    )
    assert final[f"train/{member}"] > 0 and final["train/loss"] == pytest.approx(expected, rel=1e-4)


class MemoryAtStart(Callback):
    def on_train_start(self, trainer, module):
        self.memory = module.losses["crd"].memory_student.clone()


def test_crd_memory_is_restored_on_resume(fast_cfg, teacher_run, tmp_path):
    first = train(student_cfg(fast_cfg, teacher_run, "distill=crd", output_dir=tmp_path / "run"))
    saved = torch.load(first["best"]["last_ckpt_path"], weights_only=True)["state_dict"]
    assert saved["losses.crd.memory_student"].shape == (116, 128)
    probe = MemoryAtStart()
    resume = [f"ckpt_path={first['best']['last_ckpt_path']}", "trainer.max_epochs=2"]
    train(
        student_cfg(fast_cfg, teacher_run, "distill=crd", *resume, output_dir=tmp_path / "resumed"), [probe]
    )
    assert torch.equal(probe.memory, saved["losses.crd.memory_student"])


@pytest.mark.slow  # twenty short trainings; CI runs it (.ci/run)
def test_the_distillation_benchmark_times_every_recipe_against_kd(tmp_path, monkeypatch):
    """scripts/bench_distill.py at a tiny size, so it cannot rot (the measurement is its job)."""
    from conftest import load_script

    bench = load_script("bench_distill", monkeypatch)
    tiny = ["data=synthetic", "data.image_size=16", "net=resnet8"]
    teacher = tmp_path / "teacher"
    train(compose_config([*FAST, "trainer.max_epochs=1"], teacher))
    args = ["--experiment", "none", "--epochs", "2", "--limit-batches", "2", "--repeats", "1"]
    report = bench.main([*args, "--out", str(tmp_path), *tiny, f"method.teacher_ckpt={teacher}"])
    assert set(report["ratio_to_kd"]) == set(bench.RECIPES) and report["ratio_to_kd"]["kd"] == 1.0
    assert all(rate > 0 for rate in report["images_per_s"].values())
