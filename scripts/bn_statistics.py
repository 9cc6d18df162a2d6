"""Which BatchNorm statistics a source model needs: its test error with the running statistics it
was trained with, and with statistics re-estimated from other images — the training images as
training augmented them, the same images without augmentation, and the test images themselves
(what ``tta=bn`` does with the whole test set as one batch).

BN adaptation assumes that statistics of the source's own clean images would reproduce the
source's accuracy. Training augmentation can break that (a crop padded with zeros moves every
layer's statistics), and then BN adaptation costs accuracy before any shift: this shows how much.

    python scripts/bn_statistics.py --ckpt logs/cifar10c_source/runs/<run>
    python scripts/bn_statistics.py --ckpt <run> --images 4000 --seed 0
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf
from torch import nn

from transferlab.nets.reference import build_net
from transferlab.tta.base import batchnorm_layers
from transferlab.utils.checkpoint import open_checkpoint
from transferlab.utils.config import register_resolvers


def stack(dataset, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels of ``dataset`` at ``indices`` as two tensors."""
    images, labels = zip(*(dataset[i][:2] for i in indices), strict=True)
    return torch.stack(images), torch.as_tensor(labels)


@torch.no_grad()
def with_statistics_of(net: nn.Module, images: torch.Tensor, batch_size: int = 200) -> nn.Module:
    """A copy of ``net`` whose BatchNorm layers hold the statistics of ``images``: each layer's
    mean and variance averaged over the batches (PyTorch's cumulative average, ``momentum=None``),
    its input computed with the batch statistics of the layers before, as in training."""
    net = copy.deepcopy(net)
    for layer in batchnorm_layers(net):
        layer.reset_running_stats()
        layer.momentum = None
    net.train()
    for start in range(0, len(images), batch_size):
        net(images[start : start + batch_size])
    return net.eval()


@torch.no_grad()
def error(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """The top-1 error of ``net`` in evaluation mode."""
    net.eval()
    wrong = sum(
        (net(images[i : i + batch_size]).argmax(1) != labels[i : i + batch_size]).sum().item()
        for i in range(0, len(images), batch_size)
    )
    return wrong / len(images)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="a source checkpoint or run directory")
    parser.add_argument("--images", type=int, default=4000, help="training images to re-estimate from")
    parser.add_argument("--seed", type=int, default=0, help="which training images, and their augmentation")
    args = parser.parse_args(argv)
    register_resolvers()
    checkpoint = open_checkpoint(args.ckpt, "--ckpt")
    net = build_net(checkpoint)
    if not batchnorm_layers(net):
        raise SystemExit(f"{args.ckpt}: this net has no BatchNorm layer; there are no statistics to compare")
    datamodule = hydra.utils.instantiate(OmegaConf.create(checkpoint.contract.data))
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    test_images, test_labels = stack(datamodule.datasets["test"], range(len(datamodule.datasets["test"])))
    torch.manual_seed(args.seed)  # the random subset and the augmentation's draws
    train = datamodule.datasets["train"]
    subset = torch.randperm(len(train))[: args.images].tolist()  # the folders are sorted by class
    augmented, _ = stack(train, subset)
    clean, _ = stack(datamodule.clean_train_dataset(), subset)
    rows = {
        "running (as trained)": error(net, test_images, test_labels),
        f"{len(subset)} training images, augmented as in training": error(
            with_statistics_of(net, augmented), test_images, test_labels
        ),
        f"the same {len(subset)} without augmentation": error(
            with_statistics_of(net, clean), test_images, test_labels
        ),
        f"the {len(test_images)} test images (tta=bn, one batch)": error(
            with_statistics_of(net, test_images, batch_size=len(test_images)), test_images, test_labels
        ),
    }
    print(f"Test error of {Path(args.ckpt)} by the BatchNorm statistics it normalises with:\n")
    print("| statistics from | test error |\n|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {100 * value:.2f}% |")
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
