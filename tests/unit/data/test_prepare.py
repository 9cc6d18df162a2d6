"""The offline data anyone can rebuild: ``python -m transferlab.data.prepare`` against downloads in
torchvision's real formats made here (no network), and, from the images of ``../shared/data``
written back into those formats, a rebuild whose digests equal the shared copy's."""

from __future__ import annotations

import bz2
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA, write_cifar10, write_usps
from transferlab.data.prepare import COUNTS, main, prepare, read_usps, subset_digest


def write_mnist_test_file(root: Path, images: np.ndarray, labels: list[int]) -> None:
    """MNIST's test set as torchvision keeps it after its download: the IDX files in MNIST/raw."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    header = np.array([0x803, len(labels), 28, 28], dtype=">i4").tobytes()
    (raw / "t10k-images-idx3-ubyte").write_bytes(header + images.astype(np.uint8).tobytes())
    (raw / "t10k-labels-idx1-ubyte").write_bytes(
        np.array([0x801, len(labels)], dtype=">i4").tobytes() + np.asarray(labels, dtype=np.uint8).tobytes()
    )
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):  # torchvision checks all four
        (raw / name).write_bytes((raw / name.replace("train", "t10k")).read_bytes())


def small_counts() -> dict[str, dict[str, int]]:
    return {
        "cifar10": {"train": 2, "test": 1},
        "mnist": {"train": 2, "test": 1},
        "usps": {"train": 2, "test": 1},
    }


def test_prepare_writes_the_first_n_of_each_class_under_names_that_say_where_they_come_from(
    tmp_path, skip_cifar_checksums
):
    downloads = tmp_path / "downloads"
    write_usps(downloads, per_class=3)  # first: it makes the folder
    write_cifar10(downloads, per_class_train=10, per_class_test=3)
    rng = np.random.default_rng(0)
    labels = [i % 10 for i in range(12000)]  # 5,000 images for train, the rest for test
    write_mnist_test_file(downloads, rng.integers(0, 255, (12000, 28, 28)), labels)
    digests = prepare(tmp_path / "out", downloads, download=False, counts=small_counts())
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "cifar10" / "train").iterdir())[:2] == ["airplane", "automobile"]
    assert sorted(p.name for p in (out / "cifar10" / "train" / "cat").iterdir()) == ["0000.png", "0001.png"]
    # MNIST: train from test indices below 5,000, test from the rest: the first of each class
    assert sorted(p.name for p in (out / "mnist" / "train" / "3").iterdir()) == [
        "t10k_00003.png",
        "t10k_00013.png",
    ]
    assert sorted(p.name for p in (out / "mnist" / "test" / "3").iterdir()) == ["t10k_05003.png"]
    # USPS: labels 1..10 in the file are digits 0..9; names carry the index in the split
    assert sorted(p.name for p in (out / "usps" / "train" / "0").iterdir()) == [
        "train_0000.png",
        "train_0001.png",
    ]
    with Image.open(out / "mnist" / "train" / "3" / "t10k_00003.png") as image:
        assert image.mode == "L" and image.size == (28, 28)
    assert set(digests) == {"cifar10", "mnist", "usps"} and all(len(d) == 64 for d in digests.values())
    # kept on a second call; rebuilt (to the same digests) with force
    assert prepare(out, downloads, download=False, counts=small_counts()) == digests
    assert prepare(out, downloads, download=False, counts=small_counts(), force=True) == digests
    assert not list(out.glob(".*.partial"))


def test_usps_pixels_are_the_rounded_rescaled_libsvm_values(tmp_path):
    path = tmp_path / "usps.bz2"
    values = np.linspace(-1, 1, 256)
    path.write_bytes(
        bz2.compress(("3 " + " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(values)) + "\n").encode())
    )
    images, labels = read_usps(path)
    assert labels == [2] and images.shape == (1, 16, 16)
    assert images.flatten().tolist() == np.round((values + 1) / 2 * 255).astype(np.uint8).tolist()


def test_the_default_counts_are_the_shared_copys_rule():
    assert COUNTS == {
        "cifar10": {"train": 1000, "test": 200},
        "mnist": {"train": 450, "test": 200},
        "usps": {"train": 500, "test": 140},
    }


def test_a_failed_download_is_one_line_naming_what_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "out"), "--download-dir", str(tmp_path / "none"), "--no-download"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--no-download" in err[0]


def test_a_missing_offline_tree_names_the_command_that_builds_it(fast_cfg, tmp_path):
    from transferlab.train import train
    from transferlab.utils.errors import DataError

    cfg = fast_cfg("data=imagefolder", f"data.root={tmp_path / 'offline' / 'cifar10'}")
    with pytest.raises(DataError, match=r"python -m transferlab.data.prepare --out .*offline`"):
        train(cfg)


# --- the shared copy, rebuilt from its own images written back into the download formats -----
def shared_images(dataset: str) -> list[tuple[str, str, str, np.ndarray]]:
    found = []
    for path in sorted((SHARED_DATA / dataset).glob("*/*/*")):
        with Image.open(path) as image:
            found.append((path.parts[-3], path.parts[-2], path.stem, np.asarray(image)))
    return found


def fill(labels_at: dict[int, int], size: int, quota: int, start: int) -> list[int]:
    """Labels for positions start..start+size−1: the shared images' own, and for every other
    position a class whose quota of earlier images is already full (so, as in the real file, the
    first-N rule passes it over)."""
    seen: dict[int, int] = {}
    labels = []
    for index in range(start, start + size):
        if index in labels_at:
            label = labels_at[index]
        else:
            full = [c for c, n in seen.items() if n >= quota]
            assert full, f"position {index} would be chosen: the shared copy is not the first N per class"
            label = full[0]
        seen[label] = seen.get(label, 0) + 1
        labels.append(label)
    return labels


@pytest.mark.slow  # 20,000 images written and decoded; CI runs it (.ci/run)
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_rebuilt_from_its_own_images_the_shared_copy_has_the_same_digests(tmp_path):
    downloads = tmp_path / "downloads"
    # CIFAR-10: the shared images (decoded JPEG pixels) as torchvision's pickled batches
    cifar = shared_images("cifar10")
    folder = downloads / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = sorted({c for _, c, _, _ in cifar})
    for split, files in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        part = [(c, px) for s, c, _, px in cifar if s == split]
        data = np.stack([px.transpose(2, 0, 1).reshape(-1) for _, px in part])
        labels = [names.index(c) for c, _ in part]
        chunks = np.array_split(np.arange(len(part)), len(files))
        for name, chunk in zip(files, chunks, strict=True):
            with open(folder / name, "wb") as f:
                pickle.dump({"data": data[chunk], "labels": [labels[i] for i in chunk]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    # MNIST: the shared images at their indices in the test file, other positions filled
    mnist = shared_images("mnist")
    labels_at = {int(stem[5:]): int(c) for _, c, stem, _ in mnist}
    images = np.zeros((10000, 28, 28), dtype=np.uint8)
    for _, _, stem, px in mnist:
        images[int(stem[5:])] = px
    labels = fill(labels_at, 5000, 450, 0) + fill(labels_at, 5000, 200, 5000)
    write_mnist_test_file(downloads, images, labels)
    # USPS: the shared images as libsvm lines, v = 2·p/255 − 1
    usps = shared_images("usps")
    for split, file_name, quota, size in (
        ("train", "usps.bz2", 500, 7291),
        ("test", "usps.t.bz2", 140, 2007),
    ):
        here = {int(stem.split("_")[1]): (int(c), px) for s, c, stem, px in usps if s == split}
        split_labels = fill({i: c for i, (c, _) in here.items()}, size, quota, 0)
        lines = []
        for index, label in enumerate(split_labels):
            pixels = here[index][1] if index in here else np.zeros((16, 16), dtype=np.uint8)
            values = pixels.astype(np.float64).flatten() / 255 * 2 - 1
            lines.append(f"{label + 1} " + " ".join(f"{i + 1}:{v:.8f}" for i, v in enumerate(values)))
        (downloads / file_name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    with pytest.MonkeyPatch.context() as patch:
        from torchvision.datasets import cifar

        patch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
        digests = prepare(tmp_path / "out", downloads, download=False)
    for dataset, digest in digests.items():
        assert digest == subset_digest(SHARED_DATA / dataset), dataset
