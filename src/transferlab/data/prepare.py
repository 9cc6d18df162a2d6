"""Build the offline data the offline recipes read: ``python -m transferlab.data.prepare``.

Downloads CIFAR-10, MNIST and USPS through torchvision (into ``--download-dir``, ``data/`` by
default) and writes the small subsets the offline recipes use, in ImageFolder layout
``<out>/<dataset>/<split>/<class>/<file>``, into ``--out`` (``paths.offline_data``, by default
``../shared/data`` beside the checkout). The selection rule is the first N images of each class in
the dataset's own order, and the file names say where each image comes from:

- CIFAR-10: train, the first 1,000 per class of the training set; test, the first 200 per class of
  the test set; ``NNNN.png``, the image's rank in its class;
- MNIST: train, the first 450 per class among test images 0–4,999; test, the first 200 per class
  among 5,000–9,999; ``t10k_IIIII.png``, its index in the test file;
- USPS: train, the first 500 per class of the training set; test, the first 140 per class of the
  test set; ``<split>_IIII.png``, its index in the split.

MNIST's official training images are not used, as in the shared copy (both splits are disjoint
parts of its test set). Pixels are written losslessly (PNG): MNIST as stored, USPS as
round((v + 1)/2·255) of the libsvm values in [−1, 1], CIFAR-10 as stored — the shared copy's
CIFAR-10 images are JPEG copies (quality about 75) from another source, so their pixels differ
slightly from these. ``subset_digest`` fingerprints a tree by its images' class, split, name (without
extension) and decoded pixels; ``--check <tree>`` compares the built tree with another.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from transferlab.utils.errors import DataError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DIGITS = [str(d) for d in range(10)]
# (split, images per class) of each dataset: the rule the offline recipes' numbers were made with
COUNTS = {
    "cifar10": {"train": 1000, "test": 200},
    "mnist": {"train": 450, "test": 200},
    "usps": {"train": 500, "test": 140},
}
MNIST_HALF = 5000  # MNIST: train from test indices below it, test from the rest


def first_per_class(
    labels: Sequence[int], per_class: int, start: int = 0, stop: int | None = None
) -> list[int]:
    """Indices (in ``start``..``stop``) of the first ``per_class`` images of every class, in order."""
    taken: dict[int, int] = {}
    chosen = []
    for index in range(start, len(labels) if stop is None else stop):
        label = int(labels[index])
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            chosen.append(index)
    short = {c: n for c, n in taken.items() if n < per_class}
    if short or len(taken) == 0:
        raise ValueError(f"too few images for {per_class} per class (per class: {taken})")
    return chosen


def write_images(
    out: Path, items: Iterable[tuple[str, str, str, np.ndarray]], total: int, label: str
) -> None:
    """Write ``(split, class, name, uint8 pixels)`` items as PNG files under ``out``, with a
    progress bar."""
    from tqdm import tqdm

    for split, class_name, name, pixels in tqdm(items, total=total, desc=label, unit="image"):
        folder = out / split / class_name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{name}.png")


def cifar10_items(download_dir: Path, download: bool, counts: dict[str, int]) -> list:
    from torchvision import datasets

    items = []
    for split, train in (("train", True), ("test", False)):
        dataset = datasets.CIFAR10(str(download_dir), train=train, download=download)
        ranks: dict[int, int] = {}
        for index in first_per_class(dataset.targets, counts[split]):
            label = dataset.targets[index]
            rank = ranks.get(label, 0)
            ranks[label] = rank + 1
            items.append((split, CIFAR10_CLASSES[label], f"{rank:04d}", np.asarray(dataset.data[index])))
    return items


def mnist_items(download_dir: Path, download: bool, counts: dict[str, int]) -> list:
    from torchvision import datasets

    test_set = datasets.MNIST(str(download_dir), train=False, download=download)
    labels = test_set.targets.tolist()
    images = test_set.data.numpy()
    items = []
    for split, start, stop in (("train", 0, MNIST_HALF), ("test", MNIST_HALF, None)):
        for index in first_per_class(labels, counts[split], start, stop):
            items.append((split, str(labels[index]), f"t10k_{index:05d}", images[index]))
    return items


def read_usps(path: Path) -> tuple[np.ndarray, list[int]]:
    """USPS's libsvm file as torchvision downloads it (``usps.bz2``): ``<label 1..10> i:v ...``
    with values in [−1, 1] -> (N, 16, 16) uint8 round((v + 1)/2·255), labels 0..9."""
    rows, labels = [], []
    with bz2.open(path, "rt") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            labels.append(int(float(parts[0])) - 1)
            values = np.zeros(256)
            for item in parts[1:]:
                position, value = item.split(":")
                values[int(position) - 1] = float(value)
            rows.append(np.clip(np.round((values + 1) / 2 * 255), 0, 255).astype(np.uint8).reshape(16, 16))
    return np.stack(rows), labels


def usps_items(download_dir: Path, download: bool, counts: dict[str, int]) -> list:
    from torchvision import datasets

    items = []
    for split, train, file_name in (("train", True, "usps.bz2"), ("test", False, "usps.t.bz2")):
        datasets.USPS(str(download_dir), train=train, download=download)  # fetches (and checks) the file
        images, labels = read_usps(download_dir / file_name)
        for index in first_per_class(labels, counts[split]):
            items.append((split, str(labels[index]), f"{split}_{index:04d}", images[index]))
    return items


BUILDERS: dict[str, Callable[[Path, bool, dict[str, int]], list]] = {
    "cifar10": cifar10_items,
    "mnist": mnist_items,
    "usps": usps_items,
}


def prepare(
    out: Path,
    download_dir: Path,
    names: Sequence[str] = tuple(BUILDERS),
    download: bool = True,
    counts: dict[str, dict[str, int]] | None = None,
    force: bool = False,
) -> dict[str, str]:
    """Build each dataset of ``names`` under ``out`` (a finished one is kept unless ``force``);
    return their ``subset_digest``. A tree is written beside its place and renamed into it only
    once whole, so an interrupted build leaves nothing that looks finished."""
    counts = counts or COUNTS
    digests = {}
    for name in names:
        target = out / name
        if target.is_dir() and not force:
            print(f"{name}: {target} exists, kept (--force rebuilds it)")
        else:
            items = read_items(name, download_dir, download, counts[name])
            partial = out / f".{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            write_images(partial, items, len(items), name)
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        digests[name] = subset_digest(target)
        print(f"{name}: {target}  digest {digests[name]}")
    return digests


def read_items(name: str, download_dir: Path, download: bool, counts: dict[str, int]) -> list:
    """``BUILDERS[name]``'s items; files torchvision finds but cannot parse (truncated, corrupt,
    another format) are a ``DataError`` naming the dataset, the folder and the fix."""
    try:
        return BUILDERS[name](download_dir, download, counts)
    except (OSError, RuntimeError):  # a failed download, a missing file: main() says how to get them
        raise
    except Exception as err:
        why = str(err)[:100] or "corrupt"
        raise DataError(
            f"cannot read {name}'s files in {download_dir} ({type(err).__name__}: {why}); "
            f"delete them and run again without --no-download to fetch them whole"
        ) from None


def subset_digest(root: Path) -> str:
    """sha256 over every image of a tree, in sorted order: its split, class, file name without
    extension and decoded pixels (so a PNG and a JPEG of the same pixels agree)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = path.relative_to(root).with_suffix("")
        digest.update(str(relative).encode())
        with Image.open(path) as image:
            digest.update(np.asarray(image).tobytes())
    return digest.hexdigest()


def default_out() -> Path:
    """``paths.offline_data`` of the project's config (``../shared/data`` beside the checkout)."""
    from transferlab.utils.config import compose_config

    return Path(compose_config([], ".").paths.offline_data).resolve()


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=None, help="default: paths.offline_data (../shared/data)")
    parser.add_argument("--download-dir", type=Path, default=Path("data"), help="torchvision's downloads")
    parser.add_argument("--datasets", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--no-download", action="store_true", help="use files already in --download-dir")
    parser.add_argument("--force", action="store_true", help="rebuild datasets that exist")
    parser.add_argument("--check", type=Path, default=None, help="compare the digests with this tree's")
    args = parser.parse_args(argv)
    out = args.out or default_out()
    try:
        digests = prepare(out, args.download_dir, args.datasets, not args.no_download, force=args.force)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except (OSError, RuntimeError) as err:  # torchvision: a failed download, a missing file
        print(
            f"error: {err}; run where the datasets can be downloaded, or put torchvision's files in "
            f"{args.download_dir} and pass --no-download",
            file=sys.stderr,
        )
        sys.exit(1)
    if args.check:
        differing = [n for n, d in digests.items() if subset_digest(args.check / n) != d]
        print("digests equal to" if not differing else f"digests differ for {differing} from", args.check)
        if differing:
            sys.exit(1)
    return digests


if __name__ == "__main__":
    main()
