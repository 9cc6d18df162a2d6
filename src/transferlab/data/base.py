"""The base LightningDataModule: class subsets, per-class sampling, splits, transforms, loaders.

A concrete datamodule only says how to read its raw splits (``load_splits``); everything a
researcher tunes (which classes, how many images per class, augmentation, batch size) is here,
once, and behaves the same for every dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from torchvision.transforms import v2

from transferlab.data.decoded import decode_images, decoded_nbytes
from transferlab.data.device import (
    PADDING_MODES,
    DeviceLoader,
    TransferLoader,
    pad,
    random_resized_crop,
    to_uint8_tensor,
)
from transferlab.data.subsets import (
    class_mapping,
    select_classes,
    split_per_class,
    spread_positions,
    take_per_class,
)
from transferlab.utils.errors import ConfigError, DataError
from transferlab.utils.log import log
from transferlab.utils.resume import restore_rng_state, rng_state

Auto = bool | Literal["auto"]


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


class AsUint8Tensor:
    """A PIL image -> a uint8 (C, H, W) tensor; a tensor passes as it is (``v2.ToImage`` wraps
    every tensor in a ``tv_tensors.Image`` first: 9 µs per image for nothing)."""

    def __call__(self, image: Any) -> torch.Tensor:
        return image if isinstance(image, torch.Tensor) else v2.functional.pil_to_tensor(image)

    def __repr__(self) -> str:
        return "AsUint8Tensor()"


class RandomCropFlip:
    """Per image: a crop of the image's size from the padded image (``device.pad``: zeros,
    mirrored or repeated borders) at a uniform random offset in [0, 2·padding]², then a horizontal
    flip with probability 1/2 — the distribution of torchvision's ``RandomCrop(size, padding,
    padding_mode=...)`` + ``RandomHorizontalFlip`` (tested), drawn from torch's global generator
    (seeded per DataLoader worker), in plain tensor calls (a quarter of the two v2 transforms'
    host time). ``image``: a (C, H, W) tensor."""

    def __init__(
        self,
        padding: int,
        flip: bool,
        padding_mode: str = "constant",
        resized_crop: Sequence[float] | None = None,
    ) -> None:
        self.padding, self.flip, self.padding_mode = padding, flip, padding_mode
        self.resized_crop = resized_crop

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = image.as_subclass(torch.Tensor)
        if self.resized_crop is not None:  # the batched device path's crop, on a batch of one
            image = random_resized_crop(image[None], self.resized_crop)[0]
        if self.padding:
            p, (h, w) = self.padding, image.shape[-2:]
            row, col = torch.randint(0, 2 * p + 1, (2,)).tolist()
            image = pad(image, p, self.padding_mode)[..., row : row + h, col : col + w]
        if self.flip and float(torch.rand(())) < 0.5:
            image = image.flip(-1)
        return image

    def __repr__(self) -> str:
        return (
            f"RandomCropFlip(padding={self.padding}, flip={self.flip}, padding_mode={self.padding_mode}, "
            f"resized_crop={self.resized_crop})"
        )


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

    def subset(self, positions: np.ndarray) -> LabelledImages:
        """The images at ``positions`` of this view, with their labels and transform."""
        return LabelledImages(
            self.images, self.indices[positions], self.labels.numpy()[positions], self.transform
        )

    def with_transform(self, transform: Any) -> LabelledImages:
        """The same images and labels (and positions, if it gives them) under another transform."""
        view = LabelledImages(self.images, self.indices, self.labels.numpy(), transform)
        view.with_index = self.with_index
        return view


class ClassificationDataModule(L.LightningDataModule):
    """Train / val / test image classification data with a shared selection and transform policy.

    Args:
        batch_size: the global batch size, split evenly over the devices.
        classes: class names to keep, in this order, as labels 0..k-1 (null: all classes).
        train_per_class: N training images per class, chosen from ``subset_seed`` (null: all).
        val_fraction: share of each training class carved out for validation with ``split_seed``
            (used only when the dataset has no validation split of its own).
        image_size: side of the square images the net sees; other sizes are resized.
        crop_padding, hflip: training augmentation (random crop after padding, flips).
        crop_padding_mode: how the crop pads: ``constant`` (zeros: black borders, torchvision's
            default), ``reflect`` (the image mirrored, no border pixel repeated: the crops keep the
            statistics of whole images, so BatchNorm's running statistics match those of clean
            test batches) or ``edge``.
        random_resized_crop: [smallest, largest] share of the image's area: torchvision's
            ``RandomResizedCrop`` (aspect ratios 3/4–4/3) back to ``image_size`` before the crop
            and flip, on every data path (the ImageNet-style augmentation of the adaptation
            benchmarks' protocol); null: none.
        mean, std: per-channel normalisation; null computes them from the training images.
        on_device: hold the splits as uint8 tensors on the training device and augment each
            batch there (``transferlab.data.device``) instead of per-image transforms in
            DataLoader workers: the same augmentation distribution, no host work in a step.
            ``auto``: wherever the split is in memory (decoded) and takes at most a quarter of
            the device's free memory (CIFAR-10 at 32 px: 150 MB); ``false``: streamed from
            ``num_workers`` DataLoader workers as uint8 batches, augmented on the device after the
            transfer (``TransferLoader``), as data too large to decode are.
        decode: decode image files (an ImageFolder tree) once into a memory-mapped uint8 array
            under ``decode_dir`` (``transferlab.data.decoded``) instead of every epoch. ``auto``:
            when the decoded split takes at most a quarter of this machine's memory; larger
            trees stream from their files.
        decode_dir: where decoded arrays are kept (shared by the runs of a sweep); null: decoded
            in memory, per run.
        shifted_tests: test sets under a distribution shift, by name (datamodules of the same
            classes: CIFAR-10-C at a corruption and severity, another dataset of these classes),
            each tested beside the test split as ``test/shift_<name>_acc`` with this data's
            classes, image size and normalisation: in- and out-of-distribution accuracy in one run.
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
        crop_padding_mode: str = "constant",
        random_resized_crop: Sequence[float] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        on_device: Auto = "auto",
        decode: Auto = "auto",
        decode_dir: str | None = None,
        shifted_tests: Mapping[str, ClassificationDataModule] | None = None,
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
        if crop_padding_mode not in PADDING_MODES:
            raise ConfigError(
                f"data.crop_padding_mode={crop_padding_mode!r}; use one of {', '.join(PADDING_MODES)}"
            )
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.crop_padding_mode = crop_padding_mode
        if random_resized_crop is not None:
            lo, hi = (float(v) for v in random_resized_crop)
            if not 0 < lo <= hi <= 1:
                raise ConfigError(
                    f"data.random_resized_crop={list(random_resized_crop)}: give [smallest, largest] share "
                    f"of the image's area, 0 < smallest <= largest <= 1 (the reference: [0.08, 1.0])"
                )
            random_resized_crop = (lo, hi)
        self.random_resized_crop = random_resized_crop
        self.mean = tuple(mean) if mean is not None else self.default_mean
        self.std = tuple(std) if std is not None else self.default_std
        for key, value in (("on_device", on_device), ("decode", decode)):
            if value not in (True, False, "auto"):
                raise ConfigError(f"data.{key}={value!r}; use true, false or auto")
        self.on_device = on_device
        self.decode = decode
        self.decode_dir = decode_dir
        self.shifted_tests = dict(shifted_tests or {})
        for name, shifted in self.shifted_tests.items():
            if not isinstance(shifted, ClassificationDataModule):
                raise ConfigError(
                    f"data.shifted_tests.{name} is a {type(shifted).__name__}; give a datamodule config "
                    f"(_target_: transferlab.data.CIFAR10CDataModule, ...) with the same classes"
                )
        #: names this datamodule's random stream (a domain pair sets "source" and "target")
        self.stream_name = ""
        self.datasets: dict[str, LabelledImages] = {}
        self._class_names: list[str] | None = None
        self._uint8: dict[tuple, torch.Tensor] = {}  # on the device: the resident splits
        self._generators: dict[str, torch.Generator] = {}  # per device type, and "order"
        self._pending_state: dict[str, torch.Tensor] = {}  # restored before the generator exists
        self._resized_in_memory = False  # setup() resized tensor splits to image_size
        self._with_positions = False  # with_positions(): training batches carry positions
        self.memory_format = torch.contiguous_format  # use_channels_last() changes it

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
        (``"test"``), in order: the split of the same name, and at test each shifted test set."""
        routes = [EvalRoute(stage, f"{stage}/")]
        if stage == "test":
            routes += [EvalRoute("test", f"test/shift_{name}_", domain=name) for name in self.shifted_tests]
        return routes

    def use_channels_last(self) -> None:
        """Batches come out in channels_last layout, as a channels_last net wants them."""
        self.memory_format = torch.channels_last

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
        raw = {name: self._decoded(split, name) for name, split in self.load_splits().items()}
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
        self.setup_shifted_tests()

    def setup_shifted_tests(self) -> None:
        """Each shifted test set with this data's classes (by name, in this order), image size and
        normalisation; one that lacks a class is refused by its own setup, naming it."""
        for name, shifted in self.shifted_tests.items():
            shifted.classes = list(self.class_names)
            shifted.image_size, shifted.mean, shifted.std = self.image_size, self.mean, self.std
            shifted.prepare_data()  # a cache built on first use (CIFAR-10-C), a download
            try:
                shifted.setup("test")
            except DataError as err:
                raise DataError(f"data.shifted_tests.{name}: {err}") from None

    def input_spec(self) -> dict[str, Any]:
        """What a net trained on this data is fed (after setup): the image side, the channels and
        the normalisation, as a run's contract records it (``RunContract.inputs``)."""
        channels, height, width = self.clean_train_dataset()[0][0].shape  # no loader: no random draw
        return {
            "image_size": height if height == width else [height, width],
            "channels": channels,
            "mean": [round(float(m), 4) for m in self.mean],
            "std": [round(float(s), 4) for s in self.std],
        }

    def clean_train_dataset(self) -> LabelledImages:
        """The training images without augmentation (resize and normalisation only)."""
        return self.datasets["train"].with_transform(self.eval_transform())

    def clean_sample(self, n: int) -> torch.Tensor:
        """Up to ``n`` training images spread evenly over the split (image folders are stored
        class by class), un-augmented and normalised, on the CPU: what a data-dependent
        initialisation reads (``initialize_from_data``, e.g. airbench's whitening filters)."""
        dataset = self.clean_train_dataset()
        chosen = dataset.subset(spread_positions(len(dataset), n))
        return torch.cat([batch[0] for batch in self.inference_loader(chosen, 1024, torch.device("cpu"))])

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

    def _decoded(self, split: RawSplit, name: str) -> RawSplit:
        """``split`` with its images decoded into one uint8 tensor at ``image_size`` (once, into
        the cache when the images are files), unless ``decode`` says to stream them."""
        if isinstance(split.images, torch.Tensor) or self.decode is False:
            return split
        nbytes = decoded_nbytes(len(split.images), self.image_size)
        if self.decode == "auto" and nbytes > host_memory() // 4:
            log.info(
                "%s: the %s split decoded would take %.1f GB, over a quarter of this machine's memory; "
                "its images are read from their files every epoch (data.decode=true decodes them anyway)",
                self.name,
                name,
                nbytes / 1e9,
            )
            return split
        fingerprint = getattr(split.images, "fingerprint", None)
        if fingerprint is not None and self.decode_dir:
            description = f"{self.name} {name} at {self.image_size} px"
            images = decode_images(split.images, self.image_size, fingerprint(), self.decode_dir, description)
        else:
            images = to_uint8_tensor(split.images, range(len(split.images)), self.image_size)
        return RawSplit(images, split.targets, split.class_names)

    def _resize_in_memory(self, splits: list[Sequence[Any]]) -> list[Sequence[Any]]:
        """Splits held as uint8 (N, C, H, W) tensors, resized to ``image_size`` once here instead
        of image by image in every epoch (the same antialiased resize, so the same pixels)."""
        if self.native_size == self.image_size or not all(isinstance(s, torch.Tensor) for s in splits):
            return splits
        resized: dict[int, torch.Tensor] = {}  # train and val often share one tensor
        for split in splits:
            if split.shape[-2:] == (self.image_size, self.image_size):
                resized[id(split)] = split  # decoded at this size already (memory-mapped: no copy)
            elif id(split) not in resized:
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
        augment = (
            [RandomCropFlip(self.crop_padding, self.hflip, self.crop_padding_mode, self.random_resized_crop)]
            if self.crop_padding or self.hflip or self.random_resized_crop
            else []
        )
        return v2.Compose([AsUint8Tensor(), *self._resize(), *augment, *self._finish()])

    def eval_transform(self) -> v2.Compose:
        return v2.Compose([AsUint8Tensor(), *self._resize(), *self._finish()])

    def uint8_transform(self) -> v2.Compose:
        """Decode and resize only: what DataLoader workers do when the augmentation and the
        normalisation happen batched on the device (``TransferLoader``)."""
        return v2.Compose([AsUint8Tensor(), *self._resize()])

    # --- loaders -------------------------------------------------------------------------------
    def make_loader(
        self, dataset: Dataset, batch_size: int, train: bool, images_only: bool = False
    ) -> DataLoader | DeviceLoader | TransferLoader:
        """A loader with this datamodule's settings; ``batch_size`` is global (split per device).
        ``images_only``: batches of images without labels (an unlabelled domain). Resident on the
        device where it fits (``DeviceLoader``), else streamed from DataLoader workers as uint8
        and augmented on the device (``TransferLoader``)."""
        if self.resident(dataset):
            return self.device_loader(dataset, batch_size, train, images_only=images_only)
        if not isinstance(dataset, LabelledImages):  # a dataset of someone else's: as it is
            return self._dataloader(dataset, batch_size, train)
        uint8 = dataset.with_transform(self.uint8_transform())
        device = self.device
        return TransferLoader(
            self._dataloader(ImagesOnly(uint8) if images_only else uint8, batch_size, train),
            device,
            self.mean,
            self.std,
            train=train,
            padding=self.crop_padding,
            flip=self.hflip,
            padding_mode=self.crop_padding_mode,
            generator=self.generator(device) if train else None,
            images_only=images_only,
            memory_format=self.memory_format,
            resized_crop=self.random_resized_crop,
        )

    def _dataloader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        world_size = self.trainer.world_size if self.trainer is not None else 1
        per_device = per_device_batch_size(batch_size, world_size)
        sampler: Any = None
        if world_size > 1:  # each rank its shard (Lightning does not reach inside a TransferLoader)
            seed = int(self.order_generator().initial_seed()) % 2**31
            sampler = DistributedSampler(
                dataset, world_size, self.trainer.global_rank, shuffle=train, seed=seed
            )  # Lightning sets its epoch through TransferLoader.sampler
        elif train:
            sampler = RandomSampler(dataset, generator=self.order_generator())
        return DataLoader(
            dataset,
            batch_size=per_device,
            sampler=sampler,
            # a last batch of one image breaks BatchNorm in training; drop only that case
            drop_last=train and len(dataset) % per_device == 1,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.device.type == "cuda",
        )

    def resident(self, dataset: Dataset, device: torch.device | None = None) -> bool:
        """Whether ``dataset`` is read from device memory (``on_device``), batched and augmented
        there: always with ``on_device=true``; with ``auto`` when its images are in memory and
        take at most a quarter of the device's free memory."""
        if self.on_device is False or not isinstance(dataset, LabelledImages):
            return False
        if self.on_device is True:
            return True
        if not isinstance(dataset.images, torch.Tensor):
            return False  # streamed from files: too large to decode
        device = device or self.device
        if device.type != "cuda":
            return True  # the host's memory holds it already
        free, _ = torch.cuda.mem_get_info(device)
        return decoded_nbytes(len(dataset), self.image_size, dataset.images.shape[1]) <= free // 4

    @property
    def device(self) -> torch.device:
        """The training device (the CPU without a trainer)."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _loader(self, split: str, batch_size: int, train: bool) -> DataLoader | DeviceLoader:
        return self.make_loader(self.datasets[split], batch_size, train)

    def device_loader(
        self,
        dataset: LabelledImages,
        batch_size: int,
        train: bool,
        device: torch.device | None = None,
        images_only: bool = False,
        whole: bool = False,
    ) -> DeviceLoader:
        """``dataset`` decoded once into uint8 on the training device (or ``device``), batched
        and augmented there with this datamodule's generator. ``whole``: every image on every
        process (no DDP shard), for computations that need the whole split."""
        device = device or self.device
        images = self.resident_images(dataset, device)
        trainer = self.trainer
        world_size = 1 if whole or trainer is None else trainer.world_size
        return DeviceLoader(
            images,
            dataset.labels,
            per_device_batch_size(batch_size, world_size),
            self.mean,
            self.std,
            device,
            train=train,
            padding=self.crop_padding if train else 0,
            flip=self.hflip and train,
            padding_mode=self.crop_padding_mode,
            with_index=dataset.with_index,
            rank=0 if world_size == 1 else trainer.global_rank,
            world_size=world_size,
            generator=self.generator(device) if train else None,
            images_only=images_only,
            memory_format=self.memory_format,
            resized_crop=self.random_resized_crop if train else None,
        )

    def resident_images(self, dataset: LabelledImages, device: torch.device) -> torch.Tensor:
        """The uint8 images of ``dataset`` on ``device``, decoded and copied there once."""
        key = id(dataset.images), dataset.indices.tobytes(), str(device)
        if key not in self._uint8:
            self._uint8[key] = to_uint8_tensor(dataset.images, dataset.indices, self.image_size).to(device)
        return self._uint8[key]

    def inference_loader(
        self, dataset: LabelledImages, batch_size: int, device: torch.device, seed: int | None = None
    ) -> Iterable[Any]:
        """Every image of ``dataset`` once, un-augmented, on ``device`` where it fits (in order,
        or shuffled with ``seed``): what a frozen teacher, a feature extractor or a test-time
        adaptation stream reads. Batches as the dataset's items: ``(images, labels)``."""
        shuffle = seed is not None
        if self.resident(dataset, device):
            images = self.resident_images(dataset, device)
            generator = None
            if shuffle:
                generator = torch.Generator(device=device)
                generator.manual_seed(seed)
            return DeviceLoader(
                images, dataset.labels, batch_size, self.mean, self.std, device,
                generator=generator, shuffle=shuffle, memory_format=self.memory_format,
            )  # fmt: skip
        order = torch.Generator().manual_seed(seed) if shuffle else None
        uint8 = dataset.with_transform(self.uint8_transform())
        loader = DataLoader(
            uint8,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=order,
            num_workers=self.num_workers,
            pin_memory=device.type == "cuda",
        )
        return TransferLoader(loader, device, self.mean, self.std, memory_format=self.memory_format)

    # --- the random streams of the training data: generators kept in checkpoints -------------
    def generator(self, device: torch.device) -> torch.Generator:
        """This datamodule's generator on ``device`` (crops, flips, the order of each epoch of
        resident data), seeded from the run's seed (``torch.initial_seed()``, set by
        ``seed_everything``) and ``stream_name``, or restored from a checkpoint."""
        return self._stream(torch.device(device).type, device)

    def order_generator(self) -> torch.Generator:
        """The generator of the order in which DataLoader workers read a streamed split (its own:
        a DataLoader draws from the global generator when it starts its workers, which a resumed
        run does once more than an uninterrupted one)."""
        return self._stream("order", "cpu")

    def _stream(self, key: str, device: torch.device | str) -> torch.Generator:
        if key not in self._generators:
            generator = torch.Generator(device=device)
            name = f"{self.stream_name}/{key}" if key == "order" else self.stream_name
            generator.manual_seed((torch.initial_seed() + zlib.crc32(name.encode())) % 2**63)
            if key in self._pending_state:
                generator.set_state(self._pending_state.pop(key))
            self._generators[key] = generator
        return self._generators[key]

    @contextlib.contextmanager
    def streams_kept(self) -> Iterator[None]:
        """Draws inside leave the training's random streams (and the global ones) where they
        were: a sample taken at setup does not change how the run trains."""
        self.generator(self.device), self.order_generator()  # they exist before they are kept
        state = self.state_dict()
        try:
            yield
        finally:
            self.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint by Lightning: this datamodule's generators and the global
        ones (the per-image path's shuffling and augmentation, dropout), for an exact resume."""
        return {
            "generators": {key: g.get_state() for key, g in self._generators.items()},
            "global": rng_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "global" in state_dict:
            restore_rng_state(state_dict["global"])
        for key, state in state_dict.get("generators", {}).items():
            if key in self._generators:
                self._generators[key].set_state(state)
            else:
                self._pending_state[key] = state

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, train=True)

    def eval_loader(self, split: str) -> DataLoader | DeviceLoader:
        """An evaluation loader (no shuffling, no augmentation) over one split."""
        return self._loader(split, self.eval_batch_size, train=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader("val")

    def test_dataloader(self) -> DataLoader | list[Any]:
        if not self.shifted_tests:
            return self.eval_loader("test")
        for data in self.shifted_tests.values():
            data.trainer = self.trainer  # their batches on this run's device
        return [self.eval_loader("test"), *(data.eval_loader("test") for data in self.shifted_tests.values())]

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the datamodule into each process; rebuild the splits there instead
        state = self.__dict__.copy()
        state["datasets"] = {}
        state["_uint8"] = {}
        state["_generators"] = {}
        return state


class ImagesOnly(Dataset):
    """The images of a labelled dataset, without their labels: what training sees of an
    unlabelled domain on the per-image path."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i][0]


def host_memory() -> int:
    """Bytes of this machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


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
