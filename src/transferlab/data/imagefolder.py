"""Any ``root/<split>/<class>/<image>`` tree (torchvision's ImageFolder layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from transferlab.data.base import ClassificationDataModule, RawSplit
from transferlab.data.decoded import files_fingerprint
from transferlab.utils.errors import DataError


class ImageFiles:
    """Lazily opened RGB images, so grayscale trees (MNIST, USPS) feed 3-channel nets too."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """What the decoded cache is keyed by: every file's path, size and modification time."""
        return files_fingerprint(self.paths)

    def __getitem__(self, i: int) -> Image.Image:
        try:
            with Image.open(self.paths[i]) as image:
                return image.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(
                f"cannot read image {self.paths[i]} ({type(err).__name__}: {err}); "
                f"replace the file or delete it"
            ) from None


class ImageFolderDataModule(ClassificationDataModule):
    """Images in ``root/train/<class>/*`` and ``root/test/<class>/*`` (``root/val`` optional).

    Images of any size are resized to ``image_size``; normalisation statistics are computed
    from the training images unless ``mean`` and ``std`` are given.
    """

    def __init__(
        self,
        root: str,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.split_dirs = {"train": train_split, "val": val_split, "test": test_split}
        self.name = f"ImageFolder '{self.root}'"

    def load_splits(self) -> dict[str, RawSplit]:
        if not self.root.is_dir():
            builds = (
                f", or build the offline subsets there with "
                f"`python -m transferlab.data.prepare --out {self.root.parent}`"
                if self.root.name in ("cifar10", "mnist", "usps")
                else ""
            )
            raise DataError(
                f"ImageFolder root '{self.root}' does not exist; set data.root to a folder laid "
                f"out as <root>/<split>/<class>/<image>{builds}"
            )
        raw = {}
        for split, folder in self.split_dirs.items():
            path = self.root / folder
            if path.is_dir():
                raw[split] = read_tree(path)
            elif split != "val":
                found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
                raise DataError(
                    f"ImageFolder tree '{self.root}' has no '{folder}' folder (found: "
                    f"{found or 'nothing'}); lay it out as <root>/{folder}/<class>/<image> "
                    f"or set data.{split}_split"
                )
        return raw


def read_tree(split_dir: Path) -> RawSplit:
    """Classes are the sorted sub-folders; every class must hold at least one image."""
    class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not class_dirs:
        raise DataError(f"'{split_dir}' has no class folders; put the images in {split_dir}/<class>/<image>")
    paths: list[Path] = []
    targets: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise DataError(
                f"class folder '{class_dir}' has no images ({', '.join(IMG_EXTENSIONS)}); "
                f"add images or remove the folder"
            )
        paths += files
        targets += [label] * len(files)
    return RawSplit(ImageFiles(paths), np.asarray(targets, dtype=np.int64), [p.name for p in class_dirs])
