"""The base LightningDataModule: class subsets, per-class sampling, splits, transforms, loaders.

A concrete datamodule only says how to read its raw splits (``load_splits``); everything a
researcher tunes (which classes, how many images per class, augmentation, batch size) is here,
once, and behaves the same for every dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from transferlab.data.device import DeviceLoader, to_uint8_tensor
from transferlab.data.selection import class_mapping, select_classes, split_per_class, take_per_class
from transferlab.utils.errors import ConfigError, DataError


@dataclass(frozen=True)
class EvalRoute:
    """One evaluation loader, declared by the datamodule: which ``split`` of which ``domain`` it
    reads (``""`` for single-domain data) and the ``prefix`` of the metrics computed on it, so a
    metric's name says where it comes from (``val/acc``, ``test/source_acc``). A ``report``
    route's accuracy is never logged (so nothing can select on it): it is written beside the run
    for the model-selection report only (the target's test split at every validation)."""

    split: str
    prefix: str
    domain: str = ""
    report: bool = False


@dataclass
class RawSplit:
    """One split as stored: ``images[i]`` is a PIL image or a uint8 (C, H, W) tensor."""

    images: Sequence[Any]
    targets: np.ndarray
    class_names: list[str]


class ToNormalizedFloat:
    """uint8 image -> float32 in [0, 1] -> ``(x - mean) / std`` per channel: torchvision's
    ``ToDtype(float32, scale=True)`` then ``Normalize(mean, std)``, the same arithmetic in one
    plain tensor call (a fifth of the per-image cost of the two v2 transforms on small images)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype != torch.uint8:
            raise TypeError(f"ToNormalizedFloat takes uint8 images, got {image.dtype}")
        pixels = image.as_subclass(torch.Tensor).to(torch.float32).mul_(1.0 / 255)
        return pixels.sub_(self.mean).div_(self.std)

    def __repr__(self) -> str:
        return f"ToNormalizedFloat(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


class LabelledImages(Dataset):
    """A view of some images of a raw split, with new labels and a transform.

    Items are ``(image, label)``, or ``(image, label, position)`` with ``with_index`` (set
    through ``ClassificationDataModule.with_positions``: methods that cache per-image values,
    such as teacher logits, look them up by position).
    """

    def __init__(self, images: Sequence[Any], indices: np.ndarray, labels: np.ndarray, transform: Any):
        self.images = images
        self.indices = indices
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.transform = transform
        self.with_index = False

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        image = self.transform(self.images[int(self.indices[i])])
        return (image, self.labels[i], i) if self.with_index else (image, self.labels[i])

    def with_transform(self, transform: Any) -> LabelledImages:
        """The same images and labels under another transform."""
        return LabelledImages(self.images, self.indices, self.labels.numpy(), transform)


class ClassificationDataModule(L.LightningDataModule):
    """Train / val / test image classification data with a shared selection and transform policy.

    Args:
        batch_size: the global batch size, split evenly over the devices.
        classes: class names to keep, in this order, as labels 0..k-1 (null: all classes).
        train_per_class: N training images per class, chosen from ``subset_seed`` (null: all).
        val_fraction: share of each training class carved out for validation with ``split_seed``
            (used only when the dataset has no validation split of its own).
        image_size: side of the square images the net sees; other sizes are resized.
        crop_padding, hflip: training augmentation (random crop after zero padding, flips).
        mean, std: per-channel normalisation; null computes them from the training images.
        on_device: hold the splits as uint8 tensors on the training device and augment each
            batch there (``transferlab.data.device``) instead of PIL/tensor transforms in
            DataLoader workers. The same augmentation distribution; for data that fits in
            device memory (CIFAR-10 at 32 px: 150 MB).
    """

    name = "dataset"
    #: side of the stored images when all share one size (None: unknown, always resize)
    native_size: int | None = None
    #: per-dataset normalisation constants; None means "compute from the training images"
    default_mean: tuple[float, ...] | None = None
    default_std: tuple[float, ...] | None = None

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        classes: Sequence[str] | None = None,
        train_per_class: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        subset_seed: int = 0,
        image_size: int = 32,
        crop_padding: int = 4,
        hflip: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        on_device: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be a positive integer")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.classes = list(classes) if classes is not None else None
        self.train_per_class = train_per_class
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.subset_seed = subset_seed
        self.image_size = image_size
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.mean = tuple(mean) if mean is not None else self.default_mean
        self.std = tuple(std) if std is not None else self.default_std
        self.on_device = on_device
        self.datasets: dict[str, LabelledImages] = {}
        self._class_names: list[str] | None = None
        self._uint8: dict[tuple, torch.Tensor] = {}  # on_device: decoded splits
        self._resized_in_memory = False  # setup() resized tensor splits to image_size
        self._with_positions = False  # with_positions(): training batches carry positions

    # --- what a concrete datamodule provides -------------------------------------------------
    def load_splits(self) -> dict[str, RawSplit]:
        """Return the raw ``train`` and ``test`` splits (and ``val`` if the dataset has one)."""
        raise NotImplementedError

    # --- the shared policy ---------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            raise RuntimeError("call setup() before reading class_names")
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_train_images(self) -> int:
        """Images in the training split (after setup)."""
        return len(self.datasets["train"]) if "train" in self.datasets else 0

    def evaluation_routes(self, stage: str) -> list[EvalRoute]:
        """The loaders of ``val_dataloader`` (``stage="val"``) or ``test_dataloader``
        (``"test"``), in order: here one each, the split of the same name."""
        return [EvalRoute(stage, f"{stage}/")]

    def with_positions(self) -> None:
        """Training batches carry each image's position in the training split as a third item,
        ``(images, labels, positions)``, from the next ``train_dataloader()`` on (for methods that
        keep per-image values: cached teacher logits, a memory bank)."""
        self._with_positions = True
        if "train" in self.datasets:
            self.datasets["train"].with_index = True

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # idempotent: train() sets up early to size the net's head
            return
        raw = self.load_splits()
        train = raw["train"]
        class_ids = class_mapping(train.class_names, self.classes)  # in the dataset's own numbering
        self._class_names = [train.class_names[i] for i in class_ids]

        indices, labels = select_classes(train.targets, class_ids)
        if "val" in raw:
            val_indices, val_labels = self._select_split(raw["val"], "val")
            val_images = raw["val"].images
        else:
            kept, carved = split_per_class(labels, self.val_fraction, self.split_seed)
            val_indices, val_labels, val_images = indices[carved], labels[carved], train.images
            indices, labels = indices[kept], labels[kept]
        chosen = take_per_class(labels, self.train_per_class, self.subset_seed, self._class_names)
        indices, labels = indices[chosen], labels[chosen]
        test_indices, test_labels = self._select_split(raw["test"], "test")

        if self.mean is None or self.std is None:
            self.mean, self.std = channel_stats(train.images, indices, self.split_seed)
        images = self._resize_in_memory([train.images, val_images, raw["test"].images])
        train_tf, eval_tf = self.train_transform(), self.eval_transform()
        self.datasets = {
            "train": LabelledImages(images[0], indices, labels, train_tf),
            "val": LabelledImages(images[1], val_indices, val_labels, eval_tf),
            "test": LabelledImages(images[2], test_indices, test_labels, eval_tf),
        }
        self.datasets["train"].with_index = self._with_positions

    def clean_train_dataset(self) -> LabelledImages:
        """The training images without augmentation (resize and normalisation only)."""
        return self.datasets["train"].with_transform(self.eval_transform())

    def train_fingerprint(self) -> str:
        """A hash of exactly which training images, labels and preprocessing this run uses."""
        train = self.datasets["train"]
        digest = hashlib.sha256()
        digest.update(
            repr(
                (type(self).__name__, self.name, self.class_names, self.image_size, self.mean, self.std)
            ).encode()
        )
        digest.update(np.ascontiguousarray(train.indices).tobytes())
        digest.update(train.labels.numpy().tobytes())
        return digest.hexdigest()[:16]

    def _select_split(self, split: RawSplit, name: str) -> tuple[np.ndarray, np.ndarray]:
        missing = [c for c in self.class_names if c not in split.class_names]
        if missing:
            raise DataError(
                f"{self.name}: the {name} split has no class(es) {missing}; "
                f"every selected class needs {name} images"
            )
        class_ids = [split.class_names.index(c) for c in self.class_names]
        return select_classes(split.targets, class_ids)

    def _resize_in_memory(self, splits: list[Sequence[Any]]) -> list[Sequence[Any]]:
        """Splits held as uint8 (N, C, H, W) tensors, resized to ``image_size`` once here instead
        of image by image in every epoch (the same antialiased resize, so the same pixels)."""
        if self.native_size == self.image_size or not all(isinstance(s, torch.Tensor) for s in splits):
            return splits
        resized: dict[int, torch.Tensor] = {}  # train and val often share one tensor
        for split in splits:
            if id(split) not in resized:
                resized[id(split)] = to_uint8_tensor(split, range(len(split)), self.image_size)
        self._resized_in_memory = True
        return [resized[id(split)] for split in splits]

    def _resize(self) -> list[Any]:
        if self.native_size == self.image_size or self._resized_in_memory:
            return []
        return [v2.Resize((self.image_size, self.image_size), antialias=True)]

    def _finish(self) -> list[Any]:
        return [ToNormalizedFloat(self.mean, self.std)]

    def train_transform(self) -> v2.Compose:
        augment: list[Any] = []
        if self.crop_padding:
            augment.append(v2.RandomCrop(self.image_size, padding=self.crop_padding))
        if self.hflip:
            augment.append(v2.RandomHorizontalFlip())
        return v2.Compose([v2.ToImage(), *self._resize(), *augment, *self._finish()])

    def eval_transform(self) -> v2.Compose:
        return v2.Compose([v2.ToImage(), *self._resize(), *self._finish()])

    # --- loaders -------------------------------------------------------------------------------
    def make_loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader | DeviceLoader:
        """A loader with this datamodule's settings; ``batch_size`` is global (split per device)."""
        if self.on_device and isinstance(dataset, LabelledImages):
            return self.device_loader(dataset, batch_size, train)
        world_size = self.trainer.world_size if self.trainer is not None else 1
        per_device = per_device_batch_size(batch_size, world_size)
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(
            dataset,
            batch_size=per_device,
            shuffle=train,
            # a last batch of one image breaks BatchNorm in training; drop only that case
            drop_last=train and len(dataset) % per_device == 1,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=on_cuda,
        )

    def _loader(self, split: str, batch_size: int, train: bool) -> DataLoader | DeviceLoader:
        return self.make_loader(self.datasets[split], batch_size, train)

    def device_loader(
        self, dataset: LabelledImages, batch_size: int, train: bool, device: torch.device | None = None
    ) -> DeviceLoader:
        """``dataset`` decoded once into uint8 on the training device (or ``device``), batched
        and augmented there."""
        key = id(dataset.images), dataset.indices.tobytes()
        if key not in self._uint8:
            self._uint8[key] = to_uint8_tensor(dataset.images, dataset.indices, self.image_size)
        trainer = self.trainer
        world_size = trainer.world_size if trainer is not None else 1
        return DeviceLoader(
            self._uint8[key],
            dataset.labels,
            per_device_batch_size(batch_size, world_size),
            self.mean,
            self.std,
            device or (trainer.strategy.root_device if trainer is not None else torch.device("cpu")),
            train=train,
            padding=self.crop_padding if train else 0,
            flip=self.hflip and train,
            with_index=dataset.with_index,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=world_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, train=True)

    def eval_loader(self, split: str) -> DataLoader | DeviceLoader:
        """An evaluation loader (no shuffling, no augmentation) over one split."""
        return self._loader(split, self.eval_batch_size, train=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader("test")

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the datamodule into each process; rebuild the splits there instead
        state = self.__dict__.copy()
        state["datasets"] = {}
        state["_uint8"] = {}
        return state


def channel_stats(
    images: Sequence[Any], indices: np.ndarray, seed: int, max_images: int = 2000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1] units) over up to ``max_images`` training images."""
    rng = np.random.default_rng(seed)
    sample = rng.permutation(indices)[:max_images]
    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    pixels = [to_tensor(images[int(i)]).flatten(1) for i in sample]
    if not pixels:
        raise DataError("cannot compute normalisation statistics: the training split is empty")
    flat = torch.cat(pixels, dim=1)
    std = flat.std(dim=1).clamp_min(1e-3)
    return tuple(flat.mean(dim=1).tolist()), tuple(std.tolist())


def per_device_batch_size(global_batch_size: int, world_size: int) -> int:
    """Split the global batch size over the devices, refusing an uneven split."""
    if global_batch_size % world_size:
        raise ConfigError(
            f"data.batch_size={global_batch_size} is the global batch size and must divide "
            f"evenly over {world_size} devices; use a multiple of {world_size}"
        )
    return global_batch_size // world_size
