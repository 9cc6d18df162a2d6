"""Image files decoded once into a memory-mapped array (data/decoded.py), as the datamodules use it."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image

from conftest import write_image_tree
from transferlab.data import ImageFolderDataModule, decoded
from transferlab.data import base as data_base


def datamodule(root: Path, cache: Path | None, **options) -> ImageFolderDataModule:
    module = ImageFolderDataModule(
        root=str(root), decode_dir=str(cache) if cache else None, batch_size=4, num_workers=0, **options
    )
    module.setup("fit")
    return module


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory mapping holds ``tensor``'s data (Linux), or None."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) > 5 else None
    return None


def test_decoded_images_are_the_pixels_the_per_image_path_reads(tmp_path):
    tree = write_image_tree(tmp_path / "tree", {"a": 3, "b": 2}, size=12)  # resized to 32
    stats = {"mean": [0.4] * 3, "std": [0.2] * 3}  # null would be computed from the images as stored
    cached = datamodule(tree, tmp_path / "cache", **stats)
    streamed = datamodule(tree, None, decode=False, on_device=False, **stats)
    for split in ("train", "val", "test"):
        views = [
            m.clean_train_dataset() if split == "train" else m.datasets[split] for m in (cached, streamed)
        ]
        got, expected = (torch.stack([view[i][0] for i in range(len(view))]) for view in views)
        assert torch.equal(got, expected), split


def test_a_tree_is_decoded_once_shared_by_later_runs_and_memory_mapped(tmp_path, monkeypatch):
    tree = write_image_tree(tmp_path / "tree", {"a": 3, "b": 2})
    first = datamodule(tree, tmp_path / "cache")
    arrays = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(arrays) == 2 and len(list((tmp_path / "cache").glob("*.json"))) == 2  # train, test
    decodes = []
    monkeypatch.setattr(decoded, "to_uint8_tensor", lambda *a: decodes.append(a) or None)
    second = datamodule(tree, tmp_path / "cache")  # nothing decoded again
    assert decodes == []
    images = second.datasets["train"].images
    assert isinstance(images, torch.Tensor) and images.dtype == torch.uint8
    assert mapped_file(images) in {str(a) for a in arrays}  # read from the file, not copied
    assert torch.equal(images, first.datasets["train"].images)


def test_a_changed_file_builds_a_new_array_and_an_interrupted_build_leaves_no_array(tmp_path):
    tree = write_image_tree(tmp_path / "tree", {"a": 3, "b": 2})
    datamodule(tree, tmp_path / "cache")
    before = set((tmp_path / "cache").glob("*.npy"))
    image = sorted((tree / "train" / "a").iterdir())[0]
    Image.new("RGB", (12, 12), (255, 0, 0)).save(image)
    os.utime(image, ns=(1, 1))  # a different modification time, whatever the clock
    changed = datamodule(tree, tmp_path / "cache")
    after = set((tmp_path / "cache").glob("*.npy"))
    assert len(after - before) == 1  # the train split again; the test split's array is reused
    red = changed.datasets["train"].images[0]
    assert red[0].min() == 255 and red[1].max() == 0
    # a build killed half way leaves a partial file under another name, never the array
    (tmp_path / "cache2").mkdir()
    (tmp_path / "cache2" / "deadbeef.partial-123.npy").write_bytes(b"half")
    rebuilt = datamodule(tree, tmp_path / "cache2")
    assert torch.equal(rebuilt.datasets["train"].images, changed.datasets["train"].images)


def test_a_tree_too_large_for_memory_streams_from_its_files(tmp_path, monkeypatch):
    tree = write_image_tree(tmp_path / "tree", {"a": 3, "b": 2})
    monkeypatch.setattr(data_base, "host_memory", lambda: 4 * 3 * 32 * 32)  # a quarter holds one image
    module = datamodule(tree, tmp_path / "cache")
    assert not isinstance(module.datasets["train"].images, torch.Tensor)
    assert not list((tmp_path / "cache").glob("*.npy")) if (tmp_path / "cache").exists() else True
    forced = datamodule(tree, tmp_path / "cache", decode=True)
    assert isinstance(forced.datasets["train"].images, torch.Tensor)
