"""Training throughput: the template's ``source`` method against a plain PyTorch loop.

Three loops train the same net with the same data, batch size, precision, optimiser and schedule:

- ``plain``: a hand-written PyTorch loop over the data held on the device, augmented per batch
  there (the airbench / hlb-CIFAR10 data path), no Lightning;
- ``template``: ``transferlab.train`` with its defaults (``data.on_device=auto``: the split
  decoded once, resident on the device and augmented there per batch);
- ``template_per_image``: ``transferlab.train`` with ``data.on_device=false`` (per-image
  transforms of the decoded images in ``--workers`` DataLoader worker processes).

Images/s counts training steps only (from the first batch of an epoch to the end of its last
step), after ``--warmup-epochs``; validation and checkpointing are timed apart, as a share of the
template's epoch. Prints a table and writes JSON.

    python scripts/bench_train.py                         # the article's CNN on digits, CPU
    python scripts/bench_train.py --data imagefolder --root ../shared/data/cifar10 --net resnet18 \
        --accelerator gpu --precision bf16-mixed --channels-last --batch-size 512 --workers 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from lightning.pytorch import Callback

from bench_common import StepTimer
from transferlab.callbacks.nonfinite import NonFiniteWatch
from transferlab.train import train
from transferlab.utils.config import compose_config

ROOT = Path(__file__).resolve().parents[1]


def overrides(args: argparse.Namespace) -> list[str]:
    data = [
        f"data={args.data}",
        f"data.batch_size={args.batch_size}",
        f"data.num_workers={args.workers}",
    ]
    if args.root:
        data.append(f"data.root={args.root}")
    return [
        *data,
        f"net={args.net}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={args.accelerator}",
        f"trainer.precision={args.precision}",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        "test=false",
        f"seed={args.seed}",
        f"channels_last={args.channels_last}",
        f"compile={args.compile}",
    ]


def template_run(
    args: argparse.Namespace, out: Path, on_device: str = "auto", callbacks: list[Callback] | None = None
) -> dict[str, float]:
    """``on_device``: the ``data.on_device`` setting (``auto``, the default; ``false``; ``true``)."""
    shutil.rmtree(out, ignore_errors=True)  # a finished run in ``out`` would be skipped, not timed
    cfg = compose_config([*overrides(args), f"data.on_device={on_device}"], out)
    timer = StepTimer()
    train(cfg, extra_callbacks=[*(callbacks or []), timer])
    return summarise(timer.images, timer.seconds, timer.epoch_seconds, args.warmup_epochs)


def plain_run(args: argparse.Namespace, out: Path) -> dict[str, float]:
    """The loop a researcher would write by hand: data resident on the device, no Lightning."""
    cfg = compose_config(overrides(args), out)
    L.seed_everything(args.seed, verbose=False)
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    net = hydra.utils.instantiate(cfg.net, num_classes=datamodule.num_classes).to(device)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if args.compile:
        net.compile()
    loader = datamodule.device_loader(
        datamodule.datasets["train"], args.batch_size, train=True, device=device
    )
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    optimizer = hydra.utils.instantiate(cfg.method.optimizer)(
        [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    )
    scheduler = hydra.utils.instantiate(cfg.method.scheduler)(optimizer)
    autocast_dtype = torch.bfloat16 if args.precision.startswith("bf16") else None
    images, seconds = [], []
    for _ in range(args.epochs):
        net.train()
        count, start = 0, time.perf_counter()
        for x, y in loader:
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            count += y.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        images.append(count)
        scheduler.step()
    return summarise(images, seconds, seconds, args.warmup_epochs)


def check_cost(args: argparse.Namespace, steps: int = 2000) -> dict[str, float]:
    """Host time per training step of the template's non-finite-loss watch against reading the
    loss on every step (``bool(torch.isfinite(loss))``). On a GPU the per-step read also stalls
    the queue until the step is done; that cost shows in the throughput, not here."""
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    terms = {"loss": torch.tensor(1.0, device=device), "ce": torch.tensor(1.0, device=device)}
    watch = NonFiniteWatch()
    cost = {}
    for name, step in {
        "read_every_step": lambda i: bool(torch.isfinite(terms["loss"])),
        "watch": lambda i: watch.observe(terms, i),
    }.items():
        for i in range(100):  # warm-up
            step(i)
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        cost[name] = (time.perf_counter() - start) / steps * 1e6
    watch.check(epoch=0)
    return cost


def summarise(images: list[int], train_s: list[float], epoch_s: list[float], warmup: int) -> dict[str, float]:
    rates = [n / s for n, s in zip(images[warmup:], train_s[warmup:], strict=True)]
    overhead = [1 - t / e for t, e in zip(train_s[warmup:], epoch_s[warmup:], strict=True)]
    return {
        "images_per_s": statistics.median(rates),
        "eval_and_checkpoint_share": statistics.median(overhead),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="digits")
    parser.add_argument("--root", default=None)
    parser.add_argument("--net", default="cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternate plain/template runs")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the net (all loops)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench")
    args = parser.parse_args()

    loops = {
        "plain": lambda out: plain_run(args, out),
        "template": lambda out: template_run(args, out),
        "template_per_image": lambda out: template_run(args, out, on_device="false"),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in loops}
    for repeat in range(args.repeats):  # alternate the loops, so drifts in speed hit all alike
        for name, run in loops.items():
            results[name].append(run(args.out / f"{name}_{repeat}"))
    rate = {name: statistics.median(r["images_per_s"] for r in runs) for name, runs in results.items()}
    spread = {
        name: (min(r["images_per_s"] for r in runs), max(r["images_per_s"] for r in runs))
        for name, runs in results.items()
    }
    share = {
        name: statistics.median(r["eval_and_checkpoint_share"] for r in runs)
        for name, runs in results.items()
        if name != "plain"
    }
    report = {
        "config": {k: str(v) for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name()
        if args.accelerator == "gpu"
        else f"cpu x{torch.get_num_threads()}",
        "images_per_s": rate,
        "images_per_s_min_max": spread,
        "ratio_to_plain": {name: rate[name] / rate["plain"] for name in rate},
        "ratio_to_plain_per_repeat": {  # each against the plain run just before it
            name: [r["images_per_s"] / p["images_per_s"] for r, p in zip(runs, results["plain"], strict=True)]
            for name, runs in results.items()
        },
        "nonfinite_check_us_per_step": check_cost(args),
        "eval_and_checkpoint_share_of_epoch": share,
        "runs": results,
    }
    print(f"\n{'loop':<20}{'images/s':>12}{'min-max':>16}{'x plain':>10}{'val+ckpt share':>16}")
    for name in loops:
        extra = f"{share[name]:>16.1%}" if name in share else f"{'':>16}"
        low, high = spread[name]
        print(
            f"{name:<20}{rate[name]:>12.1f}{f'{low:.0f}-{high:.0f}':>16}"
            f"{rate[name] / rate['plain']:>10.3f}{extra}"
        )
    for name in share:
        ratios = sorted(report["ratio_to_plain_per_repeat"][name])
        print(f"{name}: x plain per repeat {', '.join(f'{r:.3f}' for r in ratios)}")
    print("non-finite loss check, µs per step:", report["nonfinite_check_us_per_step"])
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"bench_{args.net}_{args.data}_{args.accelerator}.json"
    target.write_text(json.dumps(report, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
