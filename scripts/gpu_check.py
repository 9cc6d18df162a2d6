"""Every GPU claim of the README, measured by one command: ``python scripts/gpu_check.py``.

Parts, in order (each one's result is kept even if a later one fails):

1. ``throughput``: images/s of the training steps for a plain PyTorch loop (data on the device),
   the template with its defaults (data decoded once, resident, augmented on the device) and the
   template with ``data.on_device=false`` (per-image transforms in DataLoader workers), for
   ResNet-18 (bf16, channels_last, batch 512) and the article's CNN, with the ratios to plain
   (``scripts/bench_train.py``'s loops);
2. ``step_cost``: ``scripts/bench_step.py``'s counts and timings on the GPU: host→device copies
   and host reads per training step (0 on a step that writes no log), ms per step of the template,
   a bare LightningModule and a plain loop on a tiny net;
3. ``compile``: the same throughput for ResNet-18 with ``compile=true``;
4. ``nonfinite_check``: the template with the CNN and on-device data, with its non-finite-loss
   watch against the same run reading the loss on the host after every step;
5. ``time_to_accuracy``: ``experiment=cifar10_fast`` on CIFAR-10 (``data/cifar-10-batches-py``
   when present, else the 10,000-image subset in ``../shared/data/cifar10``), validated every
   epoch: accuracy against seconds of training, the learning rate per epoch, and whether the
   validation loss diverged (before the recipe's zero-initialised residual blocks it did);
6. ``airbench``: ``experiment=cifar10_airbench`` on the same data, validated every epoch;
7. ``ddp``: the on-device template on every visible GPU (``trainer=ddp``), when there are two or
   more;
8. ``distill``: one epoch of ``experiment=cifar100_distill``'s nets and schedule (a ResNet-32x4
   teacher, a ResNet-8x4 student, batch 64) for the teacher and for every distillation recipe, on
   CIFAR-100-sized synthetic images held on the GPU (50,000 of 32 px, 100 classes; CIFAR-100 itself
   cannot be downloaded there), and the hours 240 epochs of each would take;
9. ``office31``: one Office-31 task, amazon -> webcam, with ``experiment=office31_adaptation``
   (DANN, the reference library's protocol: ResNet-50 from ImageNet, 20 × 1,000 iterations,
   bf16), when the dataset is under ``--office31-root`` and torchvision's ResNet-50 weights are in
   torch's cache (the GPU machine has no internet); skipped, saying why, otherwise. Its target
   accuracy sits beside the reference library's 91.4 (docs/results.md).

Writes ``logs/gpu_check/gpu_check.json`` and prints one table. About 8 minutes on one H100/H200.
``--dry-run`` runs every part at a tiny size on the CPU (synthetic data, fp32, two CPU processes
for DDP), so the script is exercised by the test suite while no GPU is around.

    python scripts/gpu_check.py                 # on a GPU machine
    python scripts/gpu_check.py --dry-run       # anywhere, under a minute
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from bench_common import QUIET_RUN, StepTimer
from bench_train import plain_run, template_run
from transferlab.train import train
from transferlab.utils.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"


def bench_args(dry_run: bool, **settings: Any) -> argparse.Namespace:
    """The options of ``bench_train``'s loops: full size on the GPU, tiny on the CPU."""
    if dry_run:
        base = {
            "data": "synthetic",
            "root": None,
            "batch_size": 16,
            "workers": 0,
            "epochs": 2,
            "warmup_epochs": 1,
            "accelerator": "cpu",
            "precision": "32-true",
            "channels_last": False,
        }
    else:
        cifar = cifar10_data()
        base = {
            "data": cifar["data"],
            "root": cifar["root"],
            "batch_size": 512,
            "workers": 8,
            "epochs": 4,
            "warmup_epochs": 1,
            "accelerator": "gpu",
            "precision": "bf16-mixed",
            "channels_last": True,
        }
    return argparse.Namespace(**{"net": "resnet18", "compile": False, "seed": 0, **base, **settings})


def cifar10_data() -> dict[str, str | None]:
    """The full CIFAR-10 when it is on disk (``data/``), else the shared ImageFolder subset."""
    if (ROOT / "data" / "cifar-10-batches-py").is_dir():
        return {"data": "cifar10", "root": None}
    if SHARED_CIFAR10.is_dir():
        return {"data": "imagefolder", "root": str(SHARED_CIFAR10)}
    raise SystemExit("error: no CIFAR-10 (data/cifar-10-batches-py) and no ../shared/data/cifar10")


def loops(args: argparse.Namespace, out: Path) -> dict[str, float]:
    """Images/s of the three loops on one configuration, and the template's ratios to plain."""
    rate = {
        "plain": plain_run(args, out / "plain")["images_per_s"],
        "template": template_run(args, out / "default")["images_per_s"],
        "template_per_image": template_run(args, out / "per_image", on_device="false")["images_per_s"],
    }
    return rate | {f"{name}_x_plain": rate[name] / rate["plain"] for name in list(rate)[1:]}


class ReadLossEveryStep(Callback):
    """The check the template made before ``callbacks/nonfinite.py``: the loss read on the host after
    every step (which waits for the device to finish it)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bool(torch.isfinite(outputs["loss"]))


def nonfinite_check(dry_run: bool, out: Path) -> dict[str, float]:
    """Images/s of the template (the article's CNN, on-device data: the case where host time
    limits the GPU) with its non-finite watch, against the same run reading the loss every step."""
    args = bench_args(dry_run, net="cnn")
    rate = {
        "watch": template_run(args, out / "watch")["images_per_s"],
        "read_every_step": template_run(args, out / "read_every_step", callbacks=[ReadLossEveryStep()])[
            "images_per_s"
        ],
    }
    return rate | {"watch_x_read_every_step": rate["watch"] / rate["read_every_step"]}


class EpochCurve(Callback):
    """Per validated epoch: seconds of training so far (validation excluded), validation accuracy
    and loss, the learning rate of the epoch's last step and the highest one so far."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.train_seconds = 0.0
        self.peak_lr = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self._start, self._counted = time.perf_counter(), False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])  # what this step uses
        self.peak_lr = max(self.peak_lr, self._lr)

    def _count_training(self, pl_module) -> None:
        if not self._counted:  # validation runs inside the training epoch: stop the clock there
            self._sync(pl_module)
            self.train_seconds += time.perf_counter() - self._start
            self._counted = True

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._count_training(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._count_training(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        self.rows.append(
            {
                "epoch": trainer.current_epoch + 1,
                "train_seconds": round(self.train_seconds, 3),
                "val_acc": float(metrics.get("val/acc", math.nan)),
                "val_loss": float(metrics.get("val/loss", math.nan)),
                "last_step_lr": self._lr,
                "peak_lr": self.peak_lr,
            }
        )

    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()


def time_to_accuracy(dry_run: bool, out: Path) -> dict[str, Any]:
    overrides = ["experiment=cifar10_fast", "trainer.check_val_every_n_epoch=1", "logger=none"]
    overrides += ["trainer.enable_progress_bar=false", "~callbacks.progress_bar"]
    if dry_run:
        overrides += [
            "data=synthetic",
            "data.image_size=32",
            "data.batch_size=16",
            "data.eval_batch_size=16",
            "trainer=cpu",
            "trainer.precision=32-true",
            "trainer.benchmark=false",
            "channels_last=false",
            "trainer.max_epochs=2",
        ]
    else:
        cifar = cifar10_data()
        overrides += [f"data={cifar['data']}"] + ([f"data.root={cifar['root']}"] if cifar["root"] else [])
        overrides += ["data.on_device=true", "data.num_workers=0"]
    curve = EpochCurve()
    summary = train(compose_config(overrides, out), extra_callbacks=[curve])
    losses = [row["val_loss"] for row in curve.rows]
    first = losses[0] if losses else math.nan
    return {
        "curve": curve.rows,
        "test_acc": summary["final"].get("test/acc"),
        "train_seconds": curve.train_seconds,
        # the CPU check's failure: a validation loss far above chance after the first epoch
        "diverged": any(not math.isfinite(v) or v > 20 for v in losses),
        "first_val_loss": first,
    }


def airbench(dry_run: bool, out: Path) -> dict[str, Any]:
    """``experiment=cifar10_airbench`` validated every epoch: its accuracy against seconds of
    training, beside airbench94's own (0.808 ± 0.004 in 0.45 s on an H100 on the CIFAR subset)."""
    overrides = ["experiment=cifar10_airbench", "trainer.check_val_every_n_epoch=1", *QUIET_RUN]
    if dry_run:
        overrides += [
            "data=synthetic",
            "data.image_size=32",
            "data.batch_size=32",
            "trainer=cpu",
            "trainer.precision=32-true",
            "trainer.benchmark=false",
            "channels_last=false",
            "trainer.max_epochs=2",
            "net.widths=[8,16,16]",
        ]
    else:
        cifar = cifar10_data()
        overrides += [f"data={cifar['data']}"] + ([f"data.root={cifar['root']}"] if cifar["root"] else [])
    curve = EpochCurve()
    summary = train(compose_config(overrides, out), extra_callbacks=[curve])
    return {
        "curve": curve.rows,
        "test_acc": summary["final"].get("test/acc"),
        "train_seconds": curve.train_seconds,
    }


def step_cost(dry_run: bool, out: Path) -> dict[str, Any]:
    """``scripts/bench_step.py``'s counts and ms per step (template, bare Lightning, plain) on the
    device: host→device copies and host reads per step, and what each loop costs the host."""
    import bench_step

    options = ["--parts", "counts,step", "--out", str(out)]
    options += ["--epochs", "2", "--repeats", "1"] if dry_run else ["--accelerator", "gpu", "--repeats", "3"]
    report = bench_step.main(options)
    return {"counts": report["counts"], "ms_per_step": report["step"]["ms_per_step"]}


def ddp(dry_run: bool, out: Path) -> dict[str, Any]:
    devices = 2 if dry_run else torch.cuda.device_count()
    if devices < 2:
        return {"skipped": f"{devices} GPU visible"}
    args = bench_args(dry_run, net="resnet18")
    one = template_run(args, out / "one")["images_per_s"]
    trainer = ["trainer=ddp_cpu"] if dry_run else ["trainer=ddp", f"trainer.devices={devices}"]
    cfg = compose_config(
        [
            f"data={args.data}",
            *([f"data.root={args.root}"] if args.root else []),
            f"data.batch_size={args.batch_size * devices}",  # the same batch on every device
            "data.on_device=true",
            f"net={args.net}",
            *trainer,
            f"trainer.max_epochs={args.epochs}",
            f"trainer.precision={args.precision}",
            "logger=none",
            "test=false",
            "trainer.enable_progress_bar=false",
            "~callbacks.progress_bar",
        ],
        out / "ddp",
    )
    start = time.perf_counter()
    summary = train(cfg)
    seconds = time.perf_counter() - start
    return {
        "devices": devices,
        "one_device_images_per_s": one,
        "ddp_wall_seconds": seconds,
        "steps": summary["global_step"],
    }


DISTILL_RECIPES = ["none", "kd", "fitnets", "at", "sp", "pkt", "rkd", "dkd", "crd", "crd_kd"]


def distill_epochs(dry_run: bool, out: Path) -> dict[str, Any]:
    """Seconds of one training epoch of the CIFAR-100 distillation recipe's teacher and of every
    distillation loss's student, and what 240 of them (the teacher's, then the student's) take."""
    data = ["data=synthetic", "data.image_size=32", "data.on_device=true", "data.batch_size=64"]
    if dry_run:
        data += ["data.num_classes=10", "data.train_size=4", "data.test_size=1", "trainer=cpu"]
        teacher_net, student_net = ["net=resnet8"], ["net=resnet8"]
    else:
        data += ["data.num_classes=100", "data.train_size=500", "data.test_size=10", "trainer=gpu"]
        data += ["trainer.precision=bf16-mixed"]
        teacher_net, student_net = ["net=resnet32x4"], []
    common = [*data, *QUIET_RUN, "trainer.max_epochs=1"]
    teacher_timer = StepTimer()
    teacher = ["method/scheduler=multistep", "method.optimizer.lr=0.05", "trainer.check_val_every_n_epoch=1"]
    train(compose_config([*common, *teacher_net, *teacher], out / "teacher"), extra_callbacks=[teacher_timer])
    seconds = {"teacher": teacher_timer.seconds[0]}
    for recipe in DISTILL_RECIPES:
        timer = StepTimer()
        overrides = ["experiment=cifar100_distill", *common, *student_net, "~pretrain", f"distill={recipe}"]
        overrides += [f"method.teacher_ckpt={out / 'teacher'}", "trainer.check_val_every_n_epoch=2"]
        train(compose_config(overrides, out / recipe), extra_callbacks=[timer])
        seconds[recipe] = timer.seconds[0]
    return {
        "epoch_seconds": seconds,
        "hours_240_epochs_teacher_then_student": {
            recipe: round(240 * (seconds["teacher"] + seconds[recipe]) / 3600, 2)
            for recipe in DISTILL_RECIPES
        },
    }


def office31(dry_run: bool, out: Path, root: Path) -> dict[str, Any]:
    """DANN on Office-31 amazon -> webcam with the benchmarks' protocol, when the data are there."""
    if not (root / "image_list" / "amazon.txt").is_file():
        return {"skipped": f"no Office-31 under {root} (image_list/amazon.txt); pass --office31-root"}
    overrides = [
        "experiment=office31_adaptation",
        *(
            f"data.{domain}.{key}"
            for domain in ("source", "target")
            for key in (f"root={root}", "download=false")
        ),
        *(o for o in QUIET_RUN if not o.startswith("test=")),  # the target's accuracy is the measurement
    ]
    if dry_run:  # the protocol's pieces at a tiny size, no ImageNet weights
        overrides += [
            "trainer=cpu",
            "trainer.max_epochs=1",
            "data.iterations_per_epoch=2",
            "net.arch=resnet18",
        ]
        overrides += ["net.weights=null", "data.image_size=32", "feature_space.images=20"]
    else:
        overrides += ["trainer=gpu", "trainer.precision=bf16-mixed", "channels_last=true"]
    timer = StepTimer()
    summary = train(compose_config(overrides, out), extra_callbacks=[timer])
    final = summary["final"]
    return {
        "task": "amazon -> webcam",
        "method": "dann",
        "target_acc": final.get("test/acc"),
        "source_acc": final.get("test/source_acc"),
        "a_distance_start": final.get("feature/a_distance_start"),
        "a_distance_end": final.get("feature/a_distance_end"),
        "train_seconds": round(sum(timer.seconds), 1),
    }


def run_part(name: str, part: Any, results: dict[str, Any]) -> None:
    """Run one part; its failure is recorded (with the error) and the next part still runs."""
    start = time.perf_counter()
    try:
        results[name] = part()
    except Exception as err:  # a broken part must not cost the measurements of the others
        results[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    results[name]["seconds"] = round(time.perf_counter() - start, 1)
    print(f"[gpu_check] {name}: {results[name]['seconds']} s", flush=True)


def table(results: dict[str, Any]) -> str:
    lines = [f"{'part':<34}{'value':>14}"]
    for config, rates in results.get("throughput", {}).items():
        if isinstance(rates, dict):
            for key, value in rates.items():
                lines.append(f"{config + ' ' + key:<34}{value:>14.3f}")
    for key, value in results.get("compile", {}).items():
        if isinstance(value, float):
            lines.append(f"{'resnet18 compile ' + key:<34}{value:>14.3f}")
    for key, value in results.get("nonfinite_check", {}).items():
        if isinstance(value, float):
            lines.append(f"{'cnn nonfinite ' + key:<34}{value:>14.3f}")
    tta = results.get("time_to_accuracy", {})
    for row in tta.get("curve", []):
        label = f"epoch {row['epoch']}: val_acc, train s"
        lines.append(f"{label:<34}{row['val_acc']:>8.4f} {row['train_seconds']:>6.1f}")
    if "diverged" in tta:
        lines.append(f"{'cifar10_fast diverged':<34}{tta['diverged']!s:>14}")
    for row in results.get("airbench", {}).get("curve", []):
        label = f"airbench epoch {row['epoch']}: val_acc, s"
        lines.append(f"{label:<34}{row['val_acc']:>8.4f} {row['train_seconds']:>6.1f}")
    cost = results.get("step_cost", {})
    for loop, ms in cost.get("ms_per_step", {}).items():
        lines.append(f"{'ms/step ' + loop:<34}{ms:>14.3f}")
    for loop, counts in cost.get("counts", {}).items():
        row = counts.get("non_logging", {})
        if row:
            label = f"{loop} copies/reads per step"
            lines.append(f"{label:<34}{row['copies_max']:>8.0f} {row['reads_max']:>5.0f}")
    for name, seconds in results.get("distill", {}).get("epoch_seconds", {}).items():
        lines.append(f"{'distill epoch s ' + name:<34}{seconds:>14.2f}")
    office = results.get("office31", {})
    if "target_acc" in office:
        lines.append(f"{'office31 A->W dann target acc':<34}{office['target_acc']:>14.4f}")
        lines.append(f"{'office31 A->W train s':<34}{office['train_seconds']:>14.1f}")
    elif "skipped" in office:
        lines.append(f"{'office31 skipped':<34} {office['skipped'][:80]}")
    for name, part in results.items():
        if isinstance(part, dict) and "error" in part:
            lines.append(f"{name + ' FAILED':<34} {part['error'][:80]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="every part at a tiny size on the CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "gpu_check")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=[
            "throughput",
            "step_cost",
            "compile",
            "nonfinite_check",
            "time_to_accuracy",
            "airbench",
            "ddp",
            "distill",
            "office31",
        ],
    )
    parser.add_argument(
        "--office31-root",
        type=Path,
        default=ROOT / "data" / "office31",
        help="Office-31 in its published layout",
    )
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit(
            "error: no GPU on this machine; run python scripts/gpu_check.py --dry-run to check the script"
        )
    dry, out = args.dry_run, args.out
    results: dict[str, Any] = {
        "device": "cpu (dry run)" if dry else torch.cuda.get_device_name(),
        "torch": torch.__version__,
    }
    parts = {
        "throughput": lambda: {
            net: loops(bench_args(dry, net=net), out / "throughput" / net) for net in ("resnet18", "cnn")
        },
        "compile": lambda: loops(bench_args(dry, net="resnet18", compile=True), out / "compile"),
        "nonfinite_check": lambda: nonfinite_check(dry, out / "nonfinite_check"),
        "time_to_accuracy": lambda: time_to_accuracy(dry, out / "time_to_accuracy"),
        "airbench": lambda: airbench(dry, out / "airbench"),
        "step_cost": lambda: step_cost(dry, out / "step_cost"),
        "ddp": lambda: ddp(dry, out / "ddp"),
        "distill": lambda: distill_epochs(dry, out / "distill"),
        "office31": lambda: office31(dry, out / "office31", args.office31_root),
    }
    for name in args.parts:
        run_part(name, parts[name], results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"wrote {out / 'gpu_check.json'}")
    failed = [name for name in args.parts if "error" in results[name]]
    if failed:
        print(f"error: part(s) failed: {', '.join(failed)} (details in gpu_check.json)", file=sys.stderr)
    return results


if __name__ == "__main__":
    sys.exit(1 if any("error" in part for part in main().values() if isinstance(part, dict)) else 0)
