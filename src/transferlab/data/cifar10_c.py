"""CIFAR-10-C built offline: ``data=cifar10_c data.corruption=fog data.severity=5``.

Every image of a clean CIFAR-10-format ImageFolder tree (``data.clean_root``; by default the
offline subset, ``paths.offline_data/cifar10``) is corrupted once by ``data/corruptions.py`` —
seeded per image, so a rebuild gives the same pixels — and the result is cached as an ImageFolder
tree of PNG files (lossless) under ``data.cache_dir/<corruption>-<severity>-<key>/`` with a
``manifest.json`` naming what built it (the corruption, the severity, the clean tree's digest, the
build version, the corruption library's version). The key hashes those inputs, so a change to any
of them builds a new tree; the build writes into a temporary folder renamed into place at the end,
under a file lock, so an interrupted or concurrent build never leaves a half-written cache.
Everything else (classes, ``train_per_class``, the validation split, normalisation) is the
ImageFolder datamodule's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transferlab.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from transferlab.data.imagefolder import ImageFolderDataModule
from transferlab.utils.errors import DataError

BUILD_VERSION = 1  # bumped whenever the corruptions or the tree's layout change
SPLITS = ("train", "test")


def check_corruption(corruption: str, severity: int) -> None:
    """Refuse, in one line each, a corruption that is not one of the 15 and a severity outside 1–5."""
    if corruption not in CORRUPTIONS:
        raise DataError(
            f"data.corruption={corruption!r} is not a CIFAR-10-C corruption; "
            f"use one of: {', '.join(CORRUPTIONS)}"
        )
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise DataError(
            f"data.severity={severity!r} is not a severity of CIFAR-10-C; use an integer from 1 to 5"
        )


def clean_images(root: Path) -> list[Path]:
    """The clean tree's images of the built splits, in a fixed order."""
    return sorted(
        p
        for split in SPLITS
        for p in (root / split).glob("*/*")
        if p.is_file() and not p.name.startswith(".")
    )


def tree_key(root: Path) -> str:
    """A cheap fingerprint of the clean tree: every image's path and size."""
    digest = hashlib.sha256()
    for path in clean_images(root):
        digest.update(f"{path.relative_to(root)}:{path.stat().st_size}".encode())
    return digest.hexdigest()


def build_recipe(root: Path, corruption: str, severity: int) -> dict[str, Any]:
    """What determines the corrupted tree."""
    try:
        library = metadata.version("imagecorruptions-imaug")
    except metadata.PackageNotFoundError:
        raise DataError(
            "building CIFAR-10-C needs the corruption library; install it with "
            "`pip install imagecorruptions-imaug` (or `pip install -e .` in the project)"
        ) from None
    return {
        "corruption": corruption,
        "severity": severity,
        "clean_tree": tree_key(root),
        "build_version": BUILD_VERSION,
        "imagecorruptions_imaug": library,
    }


def image_seed(corruption: str, severity: int, relative: Path) -> int:
    """The seed of one image's random draws: its corruption, severity and place in the tree."""
    return zlib.crc32(f"{corruption}/{severity}/{relative.as_posix()}".encode())


def build_corrupted_tree(clean_root: Path, cache_dir: Path, corruption: str, severity: int) -> Path:
    """The corrupted tree of ``clean_root`` (built on first use, with a progress bar)."""
    from filelock import FileLock
    from tqdm import tqdm

    check_corruption(corruption, severity)
    clean_root = Path(clean_root)
    if not all((clean_root / split).is_dir() for split in SPLITS):
        builds = (
            ", or build the offline subset with `python -m transferlab.data.prepare`"
            if clean_root.name == "cifar10"
            else ""
        )
        raise DataError(
            f"data.clean_root '{clean_root}' is not a CIFAR-10 ImageFolder tree (<root>/train/<class>/, "
            f"<root>/test/<class>/); point it at one{builds}"
        )
    recipe = build_recipe(clean_root, corruption, severity)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    out = Path(cache_dir) / f"{corruption}-{severity}-{key}"
    if (out / "manifest.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{out}.lock"):
        if (out / "manifest.json").is_file():  # another job built it while this one waited
            return out
        partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        images = clean_images(clean_root)
        digest = hashlib.sha256()
        for path in tqdm(
            images, desc=f"building CIFAR-10-C {corruption} at severity {severity}", unit="image"
        ):
            relative = path.relative_to(clean_root)
            with Image.open(path) as image:
                clean = np.asarray(image.convert("RGB"))
            corrupted = corrupt(clean, corruption, severity, image_seed(corruption, severity, relative))
            target = (partial / relative).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(corrupted).save(target)
            digest.update(str(relative.with_suffix("")).encode())
            digest.update(corrupted.tobytes())
        manifest = {
            **recipe,
            "images": len(images),
            "clean_root": str(clean_root),
            "digest": digest.hexdigest(),
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(out)
    return out


class CIFAR10CDataModule(ImageFolderDataModule):
    """CIFAR-10-format images under one corruption at one severity (see the module's docstring).

    Args:
        clean_root: the clean ImageFolder tree (``train/`` and ``test/``) to corrupt.
        corruption: one of the 15 (``data.corruptions.CORRUPTIONS``).
        severity: 1 to 5.
        cache_dir: where the corrupted trees are kept.
    """

    def __init__(
        self, clean_root: str, corruption: str, severity: int, cache_dir: str, **kwargs: Any
    ) -> None:
        check_corruption(corruption, severity)
        super().__init__(root=str(clean_root), **kwargs)
        self.clean_root, self.corruption, self.severity = Path(clean_root), corruption, severity
        self.cache_dir = Path(cache_dir)
        self.name = f"CIFAR-10-C {corruption} at severity {severity}"

    def prepare_data(self) -> None:
        build_corrupted_tree(self.clean_root, self.cache_dir, self.corruption, self.severity)

    def load_splits(self) -> dict:
        # built by prepare_data on the first process; the others (and a datamodule whose
        # prepare_data was not called) find it by its key
        self.root = build_corrupted_tree(self.clean_root, self.cache_dir, self.corruption, self.severity)
        return super().load_splits()
