"""Data held on the accelerator: uint8 images in device memory, augmented per batch on the device.

With ``data.on_device=true`` a split is decoded and resized once into a uint8 (N, C, S, S) tensor
that lives on the training device; each batch is gathered, randomly cropped (zero padding, a
random offset per image), flipped and normalised there. No worker processes, no PIL, no host to
device copies: the data path of airbench and hlb-CIFAR10, behind the same datamodule options.

The augmentation has the distribution of the PIL/torchvision path: the crop's top-left corner is
uniform over the (2p + 1)² offsets of the zero-padded image, the flip a fair coin per image. The
random numbers come from torch's global generator (on the CPU), so seeding and resuming
reproduce them exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.nn import functional as F
from torchvision.transforms import v2


def to_uint8_tensor(images: Sequence[Any], indices: Sequence[int], size: int) -> torch.Tensor:
    """Decode (PIL or tensor) images ``images[i]`` for ``i`` in ``indices`` into one uint8
    (N, C, size, size) tensor, resized with antialiasing where their size differs."""
    if isinstance(images, torch.Tensor):
        batch = images[torch.as_tensor(indices, dtype=torch.long)]
        if batch.shape[-1] != size or batch.shape[-2] != size:
            batch = v2.functional.resize(batch, [size, size], antialias=True)
        return batch.contiguous()
    to_tensor = v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True)])
    return torch.stack([to_tensor(images[int(i)]) for i in indices]).contiguous()


def random_crop_flip(
    images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per image: a crop of the images' size from the zero-padded image at a uniform random offset
    in [0, 2·padding]² (torchvision's ``RandomCrop(size, padding)``), then a horizontal flip with
    probability 1/2 (``RandomHorizontalFlip``). ``images``: (N, C, H, W), any dtype and device."""
    n, _, h, w = images.shape
    out = images
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(images.device)
        rows = (offsets[0][:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (offsets[1][:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        out = padded[batch, channels, rows, cols]
    if flip:
        flips = (torch.rand(n, generator=generator) < 0.5).to(images.device)
        out = torch.where(flips[:, None, None, None], out.flip(-1), out)
    return out


class DeviceLoader:
    """Batches of a split held on a device: ``(images, labels)`` or, with ``with_index``,
    ``(images, labels, positions)``. Images come out normalised float32, augmented when training.

    Under DDP each rank takes every ``world_size``-th index of the same permutation (the
    generators are seeded alike), so the ranks see disjoint shards of one shuffle.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        train: bool = False,
        padding: int = 0,
        flip: bool = False,
        with_index: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.positions = torch.arange(len(labels), device=device)
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.train = train
        self.padding = padding
        self.flip = flip
        self.with_index = with_index
        self.rank = rank
        self.world_size = world_size

    def _order(self) -> torch.Tensor:
        n = len(self.labels)
        order = torch.randperm(n) if self.train else torch.arange(n)
        if self.world_size > 1:  # equal shards (as DistributedSampler pads): ranks step together
            total = -(-n // self.world_size) * self.world_size
            order = torch.cat([order, order[: total - n]])[self.rank :: self.world_size]
        if self.train and len(order) % self.batch_size == 1:  # a batch of one breaks BatchNorm
            order = order[:-1]
        return order.to(self.images.device)

    def __len__(self) -> int:
        n = -(-len(self.labels) // self.world_size) if self.world_size > 1 else len(self.labels)
        if self.train and n % self.batch_size == 1:
            n -= 1
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index]
            if self.train:
                images = random_crop_flip(images, self.padding, self.flip)
            images = (images.float() - self.mean) / self.std
            labels = self.labels[index]
            yield (images, labels, self.positions[index]) if self.with_index else (images, labels)
