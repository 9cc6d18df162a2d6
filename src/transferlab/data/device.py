"""Data held on the accelerator: uint8 images in device memory, augmented per batch on the device.

With ``data.on_device`` (``auto``, the default, wherever the data fit) a split is decoded and
resized once into a uint8 (N, C, S, S) tensor that lives on the training device; each batch is
gathered, randomly cropped (zero or reflect padding, a random offset per image), flipped and normalised
there. No worker processes, no PIL, no host→device copy and no host wait inside a step: the data
path of airbench and hlb-CIFAR10, behind the same datamodule options.

The augmentation has the distribution of the PIL/torchvision path: the crop's top-left corner is
uniform over the (2p + 1)² offsets of the zero-padded image, the flip a fair coin per image. The
random numbers come from a ``torch.Generator`` on the device that the datamodule owns and keeps
in the checkpoint, so a resumed run draws what the uninterrupted one would. Normalisation is the
per-image path's arithmetic (``x / 255``, minus the mean, over the std), so an evaluation batch
is the same, bit for bit, on both paths.
"""

from __future__ import annotations

import math
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


#: torchvision's ``RandomCrop`` padding modes -> ``F.pad``'s
PADDING_MODES = {"constant": "constant", "edge": "replicate", "reflect": "reflect"}


def pad(images: torch.Tensor, padding: int, mode: str = "constant") -> torch.Tensor:
    """``images`` (…, C, H, W) padded by ``padding`` on each side: zeros (``constant``), the border
    pixel repeated (``edge``) or mirrored without repeating it (``reflect``), as torchvision's
    ``RandomCrop(padding_mode=...)``."""
    if mode not in PADDING_MODES:
        raise ValueError(f"padding mode {mode!r} is not one of {sorted(PADDING_MODES)}")
    if mode == "constant":
        return F.pad(images, (padding, padding, padding, padding))
    dtype = images.dtype  # reflect and replicate padding are defined for floating point on some devices
    floating = images if dtype.is_floating_point else images.float()
    return F.pad(floating, (padding, padding, padding, padding), mode=PADDING_MODES[mode]).to(dtype)


def resized_crop_boxes(
    n: int,
    h: int,
    w: int,
    scale: Sequence[float],
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    attempts: int = 10,
) -> torch.Tensor:
    """``n`` boxes (x0, y0, x1, y1) in pixels, drawn as torchvision's
    ``RandomResizedCrop.get_params``: up to ``attempts`` tries of an area uniform in ``scale``
    × h·w and an aspect ratio log-uniform in ``ratio``, the first that fits placed uniformly;
    where none fits, the centred crop of the image's side clamped to ``ratio``."""
    area = torch.empty(n, attempts, device=device).uniform_(scale[0], scale[1], generator=generator) * (h * w)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(torch.empty(n, attempts, device=device).uniform_(log_lo, log_hi, generator=generator))
    widths = torch.sqrt(area * aspect).round()
    heights = torch.sqrt(area / aspect).round()
    fits = (widths > 0) & (widths <= w) & (heights > 0) & (heights <= h)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first attempt that fits
    cw, ch = widths.gather(1, first).squeeze(1), heights.gather(1, first).squeeze(1)
    if w / h < ratio[0]:
        fallback = (float(w), float(round(w / ratio[0])))
    elif w / h > ratio[1]:
        fallback = (float(round(h * ratio[1])), float(h))
    else:
        fallback = (float(w), float(h))
    none_fits = ~fits.any(dim=1)
    cw = torch.where(none_fits, torch.full_like(cw, fallback[0]), cw)
    ch = torch.where(none_fits, torch.full_like(ch, fallback[1]), ch)
    u = torch.rand(2, n, device=device, generator=generator)
    x0 = torch.where(none_fits, (w - cw) / 2, torch.floor(u[0] * (w - cw + 1)))
    y0 = torch.where(none_fits, (h - ch) / 2, torch.floor(u[1] * (h - ch + 1)))
    return torch.stack([x0, y0, x0 + cw, y0 + ch], dim=1)


def random_resized_crop(
    images: torch.Tensor,
    scale: Sequence[float],
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per image a box from ``resized_crop_boxes``, resized bilinearly back to the images' (H, W)
    (``torchvision.ops.roi_align`` sampling each output pixel's centre: a crop is never larger than the
    image, so this is bilinear upsampling, torchvision's ``resized_crop`` without antialiasing, which
    upsampling does not use; the outermost output pixels blend in the pixels just outside the box
    where torchvision clamps to its edge): torchvision's
    ``RandomResizedCrop(size=(H, W), scale, ratio)`` on a whole batch, a box per image. ``images``:
    (N, C, H, W), any dtype (uint8 comes back uint8, rounded)."""
    from torchvision.ops import roi_align

    n, _, h, w = images.shape
    boxes = resized_crop_boxes(n, h, w, scale, ratio, generator, images.device)
    rois = torch.cat([torch.arange(n, device=images.device, dtype=boxes.dtype).view(n, 1), boxes], dim=1)
    floating = images if images.dtype.is_floating_point else images.float()
    out = roi_align(floating, rois, output_size=(h, w), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    if images.dtype.is_floating_point:
        return out.to(images.dtype)
    return out.round_().clamp_(0, 255).to(images.dtype)


def random_crop_flip(
    images: torch.Tensor,
    padding: int,
    flip: bool,
    generator: torch.Generator | None = None,
    padding_mode: str = "constant",
    resized_crop: Sequence[float] | None = None,
) -> torch.Tensor:
    """Per image: with ``resized_crop`` = (smallest, largest share of the area), a random resized
    crop (``random_resized_crop``); a crop of the images' size from the padded image (``pad``) at
    a uniform random offset in [0, 2·padding]² (torchvision's ``RandomCrop(size, padding,
    padding_mode=...)``), then a horizontal flip with probability 1/2 (``RandomHorizontalFlip``).
    ``images``: (N, C, H, W), any dtype, on the device of ``generator`` (the default generator
    of that device when None)."""
    n, channels, h, w = images.shape
    device = images.device
    out = images
    if resized_crop is not None:
        images = out = random_resized_crop(images, resized_crop, generator=generator)
    if padding > 0:
        padded = pad(images, padding, padding_mode)
        offsets = torch.randint(0, 2 * padding + 1, (2, n, 1), device=device, generator=generator)
        rows = (offsets[0] + torch.arange(h, device=device)).view(n, 1, h, 1)
        cols = (offsets[1] + torch.arange(w, device=device)).view(n, 1, 1, w)
        batch = torch.arange(n, device=device).view(n, 1, 1, 1)
        out = padded[batch, torch.arange(channels, device=device).view(1, channels, 1, 1), rows, cols]
    if flip:
        flips = torch.rand(n, device=device, generator=generator) < 0.5
        out = torch.where(flips.view(n, 1, 1, 1), out.flip(-1), out)
    return out


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 ``(x / 255 - mean) / std``, in the per-image path's order of
    operations (``base.ToNormalizedFloat``). ``mean``, ``std``: (1, C, 1, 1) float32."""
    return images.to(torch.float32).mul_(1.0 / 255).sub_(mean).div_(std)


class DeviceLoader:
    """Batches of a split held on a device: ``(images, labels)``, ``(images, labels, positions)``
    with ``with_index``, or the images alone with ``images_only`` (an unlabelled domain). Images
    come out normalised float32, augmented when ``train``.

    ``shuffle`` (default: ``train``) draws a new order each epoch from ``generator``. Under DDP
    each rank takes every ``world_size``-th index of the same permutation (the ranks' generators
    are seeded alike), so the ranks see disjoint shards of one shuffle.
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
        padding_mode: str = "constant",
        with_index: bool = False,
        rank: int = 0,
        world_size: int = 1,
        generator: torch.Generator | None = None,
        shuffle: bool | None = None,
        images_only: bool = False,
        memory_format: torch.memory_format = torch.contiguous_format,
        resized_crop: Sequence[float] | None = None,
    ) -> None:
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.positions = torch.arange(len(labels), device=device)
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        self.padding = padding
        self.flip = flip
        self.padding_mode = padding_mode
        self.resized_crop = resized_crop
        self.with_index = with_index
        self.images_only = images_only
        self.memory_format = memory_format
        self.rank = rank
        self.world_size = world_size
        if generator is None and (self.shuffle or (train and (padding or flip or resized_crop))):
            generator = torch.Generator(device=device)
            generator.seed()
        if generator is not None and generator.device.type != torch.device(device).type:
            raise ValueError(f"the generator is on {generator.device}, the data on {device}")
        self.generator = generator

    def _order(self) -> torch.Tensor:
        n = len(self.labels)
        device = self.images.device
        order = (
            torch.randperm(n, device=device, generator=self.generator)
            if self.shuffle
            else torch.arange(n, device=device)
        )
        if self.world_size > 1:  # equal shards (as DistributedSampler pads): ranks step together
            total = -(-n // self.world_size) * self.world_size
            order = torch.cat([order, order[: total - n]])[self.rank :: self.world_size]
        if self.train and len(order) % self.batch_size == 1:  # a batch of one breaks BatchNorm
            order = order[:-1]
        return order

    def __len__(self) -> int:
        n = -(-len(self.labels) // self.world_size) if self.world_size > 1 else len(self.labels)
        if self.train and n % self.batch_size == 1:
            n -= 1
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index]
            if self.train:
                images = random_crop_flip(
                    images, self.padding, self.flip, self.generator, self.padding_mode, self.resized_crop
                )
            images = normalize(images, self.mean, self.std).contiguous(memory_format=self.memory_format)
            if self.images_only:
                yield images
            elif self.with_index:
                yield images, self.labels[index], self.positions[index]
            else:
                yield images, self.labels[index]


class TransferLoader:
    """Batches of a split too large to hold on the device: a DataLoader's workers decode and
    resize the images to uint8 (a quarter of float32's bytes to move), each batch is moved to
    ``device`` (from pinned memory, without waiting) and cropped, flipped and normalised there as
    ``DeviceLoader`` does, with the same generator."""

    def __init__(
        self,
        loader: Any,
        device: torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = False,
        padding: int = 0,
        flip: bool = False,
        generator: torch.Generator | None = None,
        images_only: bool = False,
        memory_format: torch.memory_format = torch.contiguous_format,
        padding_mode: str = "constant",
        resized_crop: Sequence[float] | None = None,
    ) -> None:
        self.loader = loader
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.train, self.padding, self.flip, self.padding_mode = train, padding, flip, padding_mode
        self.resized_crop = resized_crop
        self.generator = generator
        self.images_only = images_only
        self.memory_format = memory_format

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def sampler(self) -> Any:
        """The DataLoader's sampler: Lightning sets a ``DistributedSampler``'s epoch through it."""
        return self.loader.sampler

    @property
    def batch_sampler(self) -> Any:
        """The DataLoader's batch sampler (Lightning reads it beside ``sampler``)."""
        return self.loader.batch_sampler

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            images, rest = (batch, ()) if self.images_only else (batch[0], tuple(batch[1:]))
            images = images.to(self.device, non_blocking=True)
            rest = tuple(t.to(self.device, non_blocking=True) for t in rest)
            if self.train:
                images = random_crop_flip(
                    images, self.padding, self.flip, self.generator, self.padding_mode, self.resized_crop
                )
            images = normalize(images, self.mean, self.std).contiguous(memory_format=self.memory_format)
            yield images if self.images_only else (images, *rest)
