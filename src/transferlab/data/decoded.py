"""Image files decoded once into a uint8 array on disk, memory-mapped by every run that reads them.

An ImageFolder tree of JPEG or PNG files costs a decode per image per epoch on the per-image
path (about 240 µs of CPU per CIFAR image with its transforms). Here a split is decoded once, at
``image_size``, into ``<cache_dir>/<key>.npy`` — a (N, 3, S, S) uint8 array — beside a
``<key>.json`` manifest of what built it. The key hashes the build version, the size and the
files (path, byte size, modification time), so a changed tree or size builds a new array; the
runs of a sweep share one. The build writes a temporary file renamed into place at the end, under
a file lock: an interrupted or concurrent build never leaves a half-written array.

The pixels are those of the per-image path: decoded to RGB, then resized (where the size
differs) with the same antialiased tensor resize (``device.to_uint8_tensor``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferlab.data.device import to_uint8_tensor

BUILD_VERSION = 1  # bumped whenever the decoding or the array's layout changes
CHUNK = 512  # images decoded (and resized) per batch while building


def files_fingerprint(paths: Sequence[Path]) -> str:
    """A cheap digest of a list of files: each one's path, byte size and modification time."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def decoded_nbytes(count: int, size: int, channels: int = 3) -> int:
    """Bytes of ``count`` decoded uint8 images of side ``size``."""
    return count * channels * size * size


def decode_images(
    images: Sequence[Any], size: int, fingerprint: str, cache_dir: str | Path, description: str
) -> torch.Tensor:
    """``images`` (PIL images, read lazily by index) as one uint8 (N, 3, size, size) tensor,
    memory-mapped from the cache (built on first use, with a progress bar)."""
    from filelock import FileLock
    from tqdm import tqdm

    recipe = {"build_version": BUILD_VERSION, "size": size, "count": len(images), "files": fingerprint}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir)
    target = cache_dir / f"{key}.npy"
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{target}.lock"):
            if not target.is_file():  # another job built it while this one waited
                partial = target.with_name(f"{key}.partial-{os.getpid()}.npy")
                array = np.lib.format.open_memmap(
                    partial, mode="w+", dtype=np.uint8, shape=(len(images), 3, size, size)
                )
                with tqdm(total=len(images), desc=f"decoding {description} once", unit="image") as bar:
                    for start in range(0, len(images), CHUNK):
                        stop = min(start + CHUNK, len(images))
                        array[start:stop] = to_uint8_tensor(images, range(start, stop), size).numpy()
                        bar.update(stop - start)
                array.flush()
                del array
                manifest = {**recipe, "description": description, "key": key}
                target.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
                os.replace(partial, target)
    # copy-on-write: the pages are shared between the runs that read them and never written back
    return torch.from_numpy(np.load(target, mmap_mode="c"))
