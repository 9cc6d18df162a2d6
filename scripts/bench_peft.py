"""What each way of fine-tuning costs: parameters trained, checkpoint size and training speed, on
the same net, source and images (full fine-tuning, the linear probe, BitFit, LoRA, adapters).

Every arm fine-tunes from the same cached source; images/s counts the training images of an
epoch's steps after ``--warmup-epochs`` (the arms in turn, ``--repeats`` times; the median with
the spread), and each arm's first run gives its trained parameters (``reports`` in
``metrics.json``; all of them for full fine-tuning) and its best checkpoint's size: a
parameter-efficient run's checkpoint holds only what it trained.

    python scripts/bench_peft.py                      # split task, ResNet-20, 32 px, CPU
    python scripts/bench_peft.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench_common import (
    StepTimer,
    add_timing_arguments,
    compare,
    fine_tuning_overrides,
    parse_timing_arguments,
)
from transferlab.train import train
from transferlab.utils.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "full": [],
    "linear_probe": ["method.freeze_backbone=true"],
    "bitfit": ["method/peft=bitfit"],
    "lora": ["method/peft=lora", "method.peft.rank=4", "method.peft.target_modules=[conv1,conv2]"],
    "adapter": ["method/peft=adapter", "method.peft.layers=['3','4','5']"],
}


def run(args: argparse.Namespace, arm: str, out: Path, sizes: dict[str, dict]) -> float:
    off = ["method/regularizer=none", "method.lam=0", "method.transferability=[]"]  # only what trains differs
    overrides = fine_tuning_overrides(args, [*off, *ARMS[arm]])
    timer = StepTimer()
    summary = train(compose_config(overrides, out), extra_callbacks=[timer])
    if arm not in sizes:
        reports = json.loads((out / "metrics.json").read_text()).get("reports", {})
        ckpt = Path(summary["best"]["ckpt_path"])
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        total = sum(v.numel() for k, v in state.items() if k.startswith("net.") and v.is_floating_point())
        sizes[arm] = {
            "trained_parameters": reports.get("trained_parameters"),
            "trained_fraction": reports.get("trained_fraction"),
            "checkpoint_mb": round(ckpt.stat().st_size / 2**20, 3),
            "net_tensors_in_checkpoint": total,
        }
    return timer.rate(args.warmup_epochs)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--experiment", default="split_finetune", help="a fine-tuning pipeline, or none (give pretrain=...)"
    )
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--source-epochs", type=int, default=1)
    add_timing_arguments(parser, ROOT / "logs" / "bench_peft", epochs=3)
    args = parse_timing_arguments(parser, argv)
    sizes: dict[str, dict] = {}
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"cpu x{torch.get_num_threads()}"
    report = compare(
        args.arms,
        lambda arm, repeat: run(args, arm, args.out / f"{arm}_{repeat}", sizes),
        args.repeats,
        baseline="full",
        device=device,
        config={k: str(v) for k, v in vars(args).items()},
        out=args.out / f"bench_peft_{args.experiment}_{args.accelerator}.json",
        extra={"cost": sizes},  # filled in by the runs before compare writes
    )
    print(f"\n{'arm':<14}{'trained':>12}{'fraction':>10}{'ckpt MB':>10}")
    for arm, cost in sizes.items():
        trained, fraction = cost["trained_parameters"], cost["trained_fraction"]
        print(f"{arm:<14}{trained:>12,}{fraction:>10.4f}{cost['checkpoint_mb']:>10.3f}")
    return report


if __name__ == "__main__":
    main()
