"""What the template costs on the host, part by part, measured on a CPU (the GPU needs none of it).

    python scripts/bench_step.py                                  # every part, CPU
    python scripts/bench_step.py --parts step --repeats 5         # one part, more repeats

Parts (``--parts``):

- ``loader``: µs of CPU per training image (one thread, the workers' work done in-process) on the
  ImageFolder CIFAR subset (``--root``), epoch by epoch, for the three routes data take: JPEGs
  decoded every epoch (``data.decode=false``: what a tree too large to decode does), decoded once
  into the memory-mapped cache and streamed from it (``data.on_device=false``), and resident
  (the default); the last two crop, flip and normalise batches after the transfer (on a GPU
  that work is the GPU's, here it is counted). Epoch 1 includes reading the tree and, for the
  cached arms, building the cache; ``decoded_resident_again`` is a later run (a sweep's next
  job) that finds the cache built.
- ``counts``: per training step, host→device copies and host reads (``step_counters.HostTraffic``:
  what would cross the bus or wait for the GPU), aten operators and Python calls, for the
  template (``transferlab.train``, default callbacks and logger), a bare LightningModule (the
  same net and optimiser, Lightning with nothing added) and a plain PyTorch loop, split into
  steps that write logs and steps that do not.
- ``step``: ms per training step of the same three loops on a tiny net (an MLP on 8-px synthetic
  images), where host overhead is all there is; the arms alternate ``--repeats`` times.
- ``fast``: ``experiment=cifar10_fast`` on the CPU on the CIFAR subset, stopped after the first
  of its 18 epochs: the validation loss then (the recipe used to blow up there).

Prints a table per part and writes everything to ``--out/bench_step.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch import Callback
from torch.nn import functional as F

from step_counters import HostTraffic, OpCounter, PythonCalls, StepLedger
from transferlab.train import train
from transferlab.utils.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data=synthetic",
    "data.image_size=8",
    "data.train_size=512",  # per class: 2,048 images, 64 steps of 32
    "data.batch_size=32",
    "data.crop_padding=1",
    "net=mlp",
    "net.hidden=[64]",
    "test=false",
]


def device_of(args: argparse.Namespace) -> torch.device:
    return torch.device("cuda" if args.accelerator == "gpu" else "cpu")


def sync(device: torch.device) -> None:
    """Wait for the device (a GPU's queue) before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- the three loops ---------------------------------------------------------------------------
class StepClock(Callback):
    """ms per training step, per epoch: from the epoch's start to the end of its last step (on a
    GPU the queue is drained at those two points only)."""

    def __init__(self) -> None:
        self.ms_per_step: list[float] = []

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        sync(pl_module.device)
        self._start, self._steps = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        self._steps += 1
        if self._steps == trainer.num_training_batches:
            sync(pl_module.device)
        self._end = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.ms_per_step.append((self._end - self._start) / self._steps * 1e3)


class Counting(Callback):
    """Enters ``counters`` for the training steps of epochs >= ``from_epoch`` and books each step
    (its fetch of the next batch and its logging included) in a ``StepLedger``."""

    def __init__(self, counters: dict[str, Any], from_epoch: int = 1) -> None:
        self.ledger = StepLedger(counters)
        self.counters = counters
        self.from_epoch = from_epoch
        self._stack: contextlib.ExitStack | None = None

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch >= self.from_epoch:
            self._stack = contextlib.ExitStack()
            for counter in self.counters.values():
                self._stack.enter_context(counter)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._stack is not None:
            connector = trainer._logger_connector
            self.ledger.open(
                logs=connector.should_update_logs or batch_idx + 1 == trainer.num_training_batches
            )

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._stack is not None:
            self.ledger.close()
            self._stack.close()
            self._stack = None


def template_loop(
    args: argparse.Namespace, out: Path, callbacks: list[Callback], extra: list[str] = ()
) -> None:
    run = [
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={args.accelerator}",
        f"seed={args.seed}",
    ]
    train(compose_config([*TINY, *run, *extra], out), extra_callbacks=callbacks)


def tiny_setup(args: argparse.Namespace, out: Path) -> tuple[Any, torch.nn.Module, Any]:
    """The template's tiny data (resident, augmented per batch), net and optimiser factory."""
    cfg = compose_config([*TINY, f"seed={args.seed}"], out)
    L.seed_everything(args.seed, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.data, on_device=True)
    datamodule.setup("fit")
    net = hydra.utils.instantiate(cfg.net, num_classes=datamodule.num_classes).to(device_of(args))
    loader = datamodule.device_loader(datamodule.datasets["train"], 32, train=True, device=device_of(args))
    return loader, net, hydra.utils.instantiate(cfg.method.optimizer)


class BareModule(L.LightningModule):
    """A LightningModule with nothing but the objective and the optimiser."""

    def __init__(self, net: torch.nn.Module, optimizer: Any) -> None:
        super().__init__()
        self.net, self.optimizer = net, optimizer

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(self.net(images), labels)

    def configure_optimizers(self) -> Any:
        return self.optimizer(self.net.parameters())


def bare_loop(args: argparse.Namespace, out: Path, callbacks: list[Callback]) -> None:
    loader, net, optimizer = tiny_setup(args, out)
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(BareModule(net, optimizer), train_dataloaders=loader)


def plain_loop(args: argparse.Namespace, out: Path, counting: Counting | None = None) -> list[float]:
    """The loop a researcher writes by hand; ms per step per epoch."""
    loader, net, optimizer_factory = tiny_setup(args, out)
    optimizer = optimizer_factory(net.parameters())
    ms = []
    for epoch in range(args.epochs):
        stack = contextlib.ExitStack()
        if counting is not None and epoch >= counting.from_epoch:
            for counter in counting.counters.values():
                stack.enter_context(counter)
        with stack:
            sync(device_of(args))
            start, steps = time.perf_counter(), 0
            for images, labels in loader:
                if counting is not None and epoch >= counting.from_epoch:
                    counting.ledger.open(logs=False)
                loss = F.cross_entropy(net(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
            sync(device_of(args))
            ms.append((time.perf_counter() - start) / steps * 1e3)
            if counting is not None:
                counting.ledger.close()
    return ms


LOOPS = ("template", "bare_lightning", "plain")


def run_loop(name: str, args: argparse.Namespace, out: Path, callbacks: list[Callback]) -> list[float]:
    shutil.rmtree(out, ignore_errors=True)  # a finished run in ``out`` would be skipped, not run
    clock = StepClock()
    if name == "template":
        template_loop(args, out, [*callbacks, clock], args.template_overrides)
    elif name == "bare_lightning":
        bare_loop(args, out, [*callbacks, clock])
    else:
        counting = next((c for c in callbacks if isinstance(c, Counting)), None)
        return plain_loop(args, out, counting)
    return clock.ms_per_step


# --- parts -------------------------------------------------------------------------------------
def part_step(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[float]] = {name: [] for name in LOOPS}
    for repeat in range(args.repeats):  # alternate: a drift in the machine's speed hits all alike
        for name in LOOPS:
            per_epoch = run_loop(name, args, args.out / f"step_{name}_{repeat}", [])
            runs[name].append(statistics.median(per_epoch[1:]))  # the first epoch warms up
    median = {name: statistics.median(values) for name, values in runs.items()}
    report = {
        "ms_per_step": median,
        "ms_per_step_min_max": {n: (min(v), max(v)) for n, v in runs.items()},
        "over_plain_ms": {n: median[n] - median["plain"] for n in LOOPS},
        # each repeat against the plain run of the same repeat
        "over_plain_ms_per_repeat": {
            n: [a - p for a, p in zip(runs[n], runs["plain"], strict=True)] for n in LOOPS
        },
        "runs": runs,
    }
    print(f"\n{'loop':<16}{'ms/step':>10}{'min-max':>16}{'over plain':>12}  per repeat")
    for name in LOOPS:
        low, high = report["ms_per_step_min_max"][name]
        per = ", ".join(f"{d:+.3f}" for d in sorted(report["over_plain_ms_per_repeat"][name]))
        spread = f"{low:.3f}-{high:.3f}"
        print(f"{name:<16}{median[name]:>10.3f}{spread:>16}{report['over_plain_ms'][name]:>+12.3f}  {per}")
    return report


def part_counts(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name in LOOPS:
        traffic = Counting({"traffic": HostTraffic(device_of(args)), "ops": OpCounter()})
        run_loop(name, args, args.out / f"counts_{name}", [traffic])
        calls = Counting({"calls": PythonCalls()})  # alone: the other counters' own calls are Python
        run_loop(name, args, args.out / f"calls_{name}", [calls])
        summary = traffic.ledger.summary()
        for kind, values in calls.ledger.summary().items():
            summary.setdefault(kind, {}).update({k: v for k, v in values.items() if k != "steps"})
        summary["counted"] = dict(traffic.counters["traffic"].where)
        report[name] = summary
    header = f"{'loop':<16}{'steps':<13}{'copies':>8}{'reads':>8}{'ops':>8}{'py calls':>10}"
    print(f"\n{header}  (medians; max copies/reads)")
    for name in LOOPS:
        for kind in ("non_logging", "logging"):
            row = report[name].get(kind)
            if row:
                medians = (row[f"{k}_median"] for k in ("copies", "reads", "ops", "python_calls"))
                cells = "{:>8.0f}{:>8.0f}{:>8.0f}{:>10.0f}".format(*medians)
                print(f"{name:<16}{kind:<13}{cells}  {row['copies_max']:.0f}/{row['reads_max']:.0f}")
    return report


def part_loader(args: argparse.Namespace) -> dict[str, Any]:
    from transferlab.data import ImageFolderDataModule

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in one DataLoader worker
    common = {
        "root": str(args.root),
        "num_workers": 0,
        "batch_size": 256,
        "decode_dir": str(args.out / "decoded"),
    }
    arms = {
        "jpeg_every_epoch": {"decode": False, "on_device": False},
        "decoded_streamed": {"decode": True, "on_device": False},
        "decoded_resident": {"decode": True, "on_device": True},
        "decoded_resident_again": {"decode": True, "on_device": True},  # a later job: the cache is built
    }
    report: dict[str, Any] = {}
    try:
        for name, options in arms.items():
            if name in ("decoded_streamed", "decoded_resident"):
                shutil.rmtree(args.out / "decoded", ignore_errors=True)  # the first epoch builds it
            cpu_start = time.process_time()
            datamodule = ImageFolderDataModule(**common, **options)
            datamodule.setup("fit")
            setup_us = (time.process_time() - cpu_start) * 1e6
            loader = datamodule.train_dataloader()
            per_epoch = []
            for _ in range(args.loader_epochs):
                start, images = time.process_time(), 0
                for batch in loader:
                    images += batch[1].shape[0]
                per_epoch.append((time.process_time() - start) * 1e6 / images)
            per_epoch[0] += setup_us / images  # reading the tree (and the cache build) is epoch 1's
            report[name] = {"us_per_image_by_epoch": per_epoch, "images": images}
    finally:
        torch.set_num_threads(threads)
    print(
        f"\n{'data path':<22}"
        + "".join(f"{f'epoch {i + 1}':>12}" for i in range(args.loader_epochs))
        + "   µs CPU/image"
    )
    for name, row in report.items():
        print(f"{name:<22}" + "".join(f"{v:>12.1f}" for v in row["us_per_image_by_epoch"]))
    return report


class StopAfterFirstEpoch(Callback):
    """Ends the run after its first epoch's validation: the first epoch of the full schedule (the
    learning rate still rising), not a one-epoch schedule."""

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        trainer.should_stop = True


def part_fast(args: argparse.Namespace) -> dict[str, Any]:
    overrides = [
        "experiment=cifar10_fast",
        "data=imagefolder",
        f"data.root={args.root}",
        "trainer=cpu",
        "trainer.precision=32-true",
        "trainer.check_val_every_n_epoch=1",
        "trainer.benchmark=false",
        "channels_last=false",
        "test=false",
        f"seed={args.seed}",
        *args.fast_overrides,
    ]
    start = time.perf_counter()
    shutil.rmtree(args.out / "fast", ignore_errors=True)
    summary = train(compose_config(overrides, args.out / "fast"), extra_callbacks=[StopAfterFirstEpoch()])
    result = {
        "val_loss_after_epoch_1": summary["final"]["val/loss"],
        "val_acc_after_epoch_1": summary["final"]["val/acc"],
        "seconds": time.perf_counter() - start,
        "overrides": overrides,
    }
    loss, accuracy = result["val_loss_after_epoch_1"], result["val_acc_after_epoch_1"]
    print(f"\ncifar10_fast after its first epoch on the CPU: val/loss {loss:.3f}, val/acc {accuracy:.3f}")
    return result


PARTS = {"loader": part_loader, "counts": part_counts, "step": part_step, "fast": part_fast}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    parser.add_argument(
        "--epochs", type=int, default=4, help="epochs of each tiny-net loop (the first warms up)"
    )
    parser.add_argument("--loader-epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--accelerator", default="cpu", choices=["cpu", "gpu"], help="of the counts and step parts"
    )
    parser.add_argument(
        "--template-overrides", nargs="*", default=[], help="more overrides of the template loop"
    )
    parser.add_argument("--fast-overrides", nargs="*", default=[], help="more overrides of the fast part")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench_step")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts {unknown} unknown; choose from {', '.join(PARTS)}")
    report: dict[str, Any] = {
        "config": {k: str(v) for k, v in vars(args).items()},
        "device": f"cpu x{torch.get_num_threads()}",
    }
    for part in parts:
        report[part] = PARTS[part](args)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "bench_step.json"
    target.write_text(json.dumps(report, indent=2))
    print(f"wrote {target}")
    return report


if __name__ == "__main__":
    main()
