"""Datamodules: class subsets, per-class sampling, splits, formats on disk, and bad input."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import hydra
import numpy as np
import pytest
import torch

from conftest import FAST, SHARED_DATA, compose_config, write_cifar10, write_cifar100, write_image_tree
from transferlab.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    ImageFolderDataModule,
    SyntheticDataModule,
)
from transferlab.data.base import ToNormalizedFloat, per_device_batch_size
from transferlab.data.subsets import (
    class_mapping,
    select_classes,
    split_per_class,
    take_per_class,
)
from transferlab.utils.errors import ConfigError, DataError


def labels_of(dataset) -> np.ndarray:
    return dataset.labels.numpy()


def test_class_subset_keeps_the_given_order_as_labels():
    dm = DigitsDataModule(classes=["7", "2", "9"])
    dm.setup()
    assert dm.class_names == ["7", "2", "9"]
    raw = dm.load_splits()["train"]
    train = dm.datasets["train"]
    # label k of the subset is the k-th named class of the raw data
    for original, new in zip(raw.targets[train.indices], labels_of(train), strict=True):
        assert dm.class_names[new] == str(original)
    assert set(labels_of(dm.datasets["test"])) == {0, 1, 2}


def test_train_per_class_is_exact_deterministic_and_seeded():
    def chosen(seed: int, per_class: int) -> np.ndarray:
        dm = DigitsDataModule(classes=["0", "1", "2"], train_per_class=per_class, subset_seed=seed)
        dm.setup()
        assert np.bincount(labels_of(dm.datasets["train"])).tolist() == [per_class] * 3
        return dm.datasets["train"].indices

    assert np.array_equal(chosen(0, 20), chosen(0, 20))
    assert not np.array_equal(chosen(0, 20), chosen(1, 20))
    # a prefix of one seeded permutation: fewer images are a subset of more
    assert set(chosen(3, 10)) <= set(chosen(3, 20))


def test_validation_is_carved_per_class_with_a_fixed_seed_and_disjoint_from_train():
    a, b = (
        DigitsDataModule(val_fraction=0.2, subset_seed=0),
        DigitsDataModule(val_fraction=0.2, subset_seed=5),
    )
    a.setup(), b.setup()
    assert np.array_equal(a.datasets["val"].indices, b.datasets["val"].indices)  # run seed-independent
    assert not set(a.datasets["val"].indices) & set(a.datasets["train"].indices)
    counts = np.bincount(labels_of(a.datasets["val"]))
    totals = counts + np.bincount(labels_of(a.datasets["train"]))
    assert np.all(np.abs(counts - 0.2 * totals) <= 0.5 + 1e-9)


def test_selection_helpers_match_a_direct_computation():
    targets = np.array([3, 1, 3, 0, 1, 3, 2])
    keep, labels = select_classes(targets, [3, 1])
    assert keep.tolist() == [0, 1, 2, 4, 5] and labels.tolist() == [0, 1, 0, 1, 0]
    kept, carved = split_per_class(np.array([0] * 10 + [1] * 20), 0.1, seed=0)
    assert len(carved) == 3 and len(kept) == 27 and not set(kept) & set(carved)
    picked = take_per_class(np.array([0, 0, 0, 1, 1]), 2, seed=0, class_names=["a", "b"])
    assert sorted(np.array([0, 0, 0, 1, 1])[picked].tolist()) == [0, 0, 1, 1]


def test_unknown_class_name_lists_the_valid_ones():
    with pytest.raises(DataError, match=r"unknown class name\(s\) \['cow'\].*valid names: 0, 1"):
        class_mapping([str(i) for i in range(10)], ["3", "cow"])
    with pytest.raises(DataError, match="more than once"):
        class_mapping(["a", "b"], ["a", "a"])


def test_train_per_class_larger_than_a_class_names_the_class():
    dm = DigitsDataModule(classes=["4"], train_per_class=10_000)
    with pytest.raises(DataError, match=r"train_per_class=10000 but class '4' has only \d+ training"):
        dm.setup()


def test_images_are_resized_to_the_net_input_and_normalised():
    dm = DigitsDataModule(image_size=24, batch_size=32)
    dm.setup()
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape == (32, 3, 24, 24) and images.dtype == torch.float32
    assert labels.dtype == torch.long
    # normalised with statistics of the training images: roughly zero mean over a batch
    assert abs(images.mean().item()) < 0.5


def test_imagefolder_reads_a_tree_of_any_image_size(tmp_path: Path):
    root = write_image_tree(tmp_path / "tree", {"cat": 10, "dog": 8}, size=20)
    dm = ImageFolderDataModule(root=str(root), image_size=16, batch_size=4, val_fraction=0.25)
    dm.setup()
    assert dm.class_names == ["cat", "dog"]
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 13, "val": 5, "test": 18}
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16)


def test_imagefolder_uses_a_val_folder_when_there_is_one(tmp_path: Path):
    root = write_image_tree(tmp_path / "tree", {"a": 4, "b": 4}, splits=("train", "val", "test"))
    dm = ImageFolderDataModule(root=str(root))
    dm.setup()
    assert len(dm.datasets["train"]) == 8 and len(dm.datasets["val"]) == 8


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root, "does not exist"),
        (lambda root: root.mkdir() or root, "has no 'train' folder"),
        (lambda root: (root / "train").mkdir(parents=True) or root, "has no class folders"),
        (lambda root: (root / "train" / "cat").mkdir(parents=True) or root, "has no images"),
    ],
)
def test_malformed_imagefolder_tree_is_a_clear_error(tmp_path: Path, make, message):
    root = make(tmp_path / "tree")
    with pytest.raises(DataError, match=message):
        ImageFolderDataModule(root=str(root)).setup()


def test_imagefolder_test_split_must_have_every_selected_class(tmp_path: Path):
    root = write_image_tree(tmp_path / "tree", {"a": 3, "b": 3}, splits=("train",))
    write_image_tree(root, {"a": 3}, splits=("test",))
    with pytest.raises(DataError, match=r"test split has no class\(es\) \['b'\]"):
        ImageFolderDataModule(root=str(root), val_fraction=0.34).setup()


@pytest.mark.skipif(not (SHARED_DATA / "cifar10").is_dir(), reason="needs ../shared/data")
def test_imagefolder_on_the_shared_cifar10_subset():
    dm = ImageFolderDataModule(root=str(SHARED_DATA / "cifar10"), classes=["ship", "cat"], train_per_class=50)
    dm.setup()
    assert dm.class_names == ["ship", "cat"]
    assert np.bincount(labels_of(dm.datasets["train"])).tolist() == [50, 50]
    assert np.bincount(labels_of(dm.datasets["test"])).tolist() == [200, 200]


def test_cifar10_reads_torchvision_format(tmp_path: Path, skip_cifar_checksums):
    root = write_cifar10(tmp_path / "data", per_class_train=10, per_class_test=3)
    dm = CIFAR10DataModule(root=str(root), download=False, val_fraction=0.2, classes=["cat", "ship"])
    dm.setup()
    assert dm.class_names == ["cat", "ship"] and dm.mean == CIFAR10DataModule.default_mean
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 16, "val": 4, "test": 6}
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape[1:] == (3, 32, 32)


def test_cifar100_reads_torchvision_format(tmp_path: Path, skip_cifar_checksums):
    root = write_cifar100(tmp_path / "data", per_class_train=2, per_class_test=1)
    dm = CIFAR100DataModule(root=str(root), download=False, val_fraction=0.5)
    dm.setup()
    assert dm.num_classes == 100 and dm.class_names[7] == "class007"
    assert len(dm.datasets["test"]) == 100


def test_missing_cifar_that_cannot_download_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(self):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    dm = CIFAR10DataModule(root=str(tmp_path), download=True)
    with pytest.raises(DataError, match=r"download failed.*point data.root at a folder that holds"):
        dm.prepare_data()
    with pytest.raises(DataError, match=r"data.download=false.*data.root"):
        CIFAR10DataModule(root=str(tmp_path), download=False).setup()


def test_synthetic_classes_are_separable_by_their_mean_image():
    dm = SyntheticDataModule(num_classes=3, train_size=20, test_size=10, val_fraction=0.1)
    dm.setup()
    train, test = dm.clean_train_dataset(), dm.datasets["test"]  # the data, not its augmentation
    x = torch.stack([train[i][0] for i in range(len(train))])
    centroids = torch.stack([x[train.labels == k].mean(0) for k in range(3)]).flatten(1)
    xt = torch.stack([test[i][0] for i in range(len(test))]).flatten(1)
    predicted = torch.cdist(xt, centroids).argmin(1)
    assert (predicted == test.labels).float().mean() > 0.9


def test_global_batch_size_must_divide_over_devices():
    assert per_device_batch_size(128, 4) == 32
    with pytest.raises(ConfigError, match=r"data.batch_size=100.*over 3 devices"):
        per_device_batch_size(100, 3)


def test_mnist_and_usps_read_torchvision_formats_as_rgb_digits(tmp_path: Path):
    from conftest import write_mnist, write_usps
    from transferlab.data import MNISTDataModule, USPSDataModule

    mnist = MNISTDataModule(
        root=str(write_mnist(tmp_path / "m")), download=False, val_fraction=0.34, image_size=16
    )
    mnist.setup()
    usps = USPSDataModule(
        root=str(write_usps(tmp_path / "u")), download=False, val_fraction=0.34, image_size=16
    )
    usps.setup()
    assert mnist.class_names == usps.class_names == [str(d) for d in range(10)]
    for dm in (mnist, usps):
        images, _ = next(iter(dm.train_dataloader()))
        assert images.shape[1:] == (3, 16, 16) and len(dm.datasets["test"]) == 30
    with pytest.raises(DataError, match=r"point data\.root"):
        USPSDataModule(root=str(tmp_path / "none"), download=False).setup()


def test_stl10_lines_up_with_cifar10_names(tmp_path: Path, monkeypatch):
    from torchvision.datasets import stl10

    from conftest import write_stl10
    from transferlab.data import STL10DataModule

    monkeypatch.setattr(
        stl10, "check_integrity", lambda path, md5=None: Path(path).is_file() or "unlabeled" in path
    )
    shared = ["airplane", "automobile", "bird", "cat", "deer", "dog", "horse", "ship", "truck"]
    dm = STL10DataModule(root=str(write_stl10(tmp_path)), download=False, classes=shared, val_fraction=0.5)
    dm.setup()
    assert dm.class_names == shared  # 'car' read as 'automobile', 'monkey' left out
    images, _ = next(iter(dm.val_dataloader()))
    assert images.shape[1:] == (3, 32, 32) and len(dm.datasets["test"]) == 18


def test_to_normalized_float_is_torchvisions_to_dtype_then_normalize_bit_for_bit():
    from torchvision.transforms import v2

    image = torch.randint(0, 256, (3, 9, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    assert torch.equal(ToNormalizedFloat(mean, std)(image), reference(image))
    with pytest.raises(TypeError, match=r"takes uint8 images, got torch\.float32"):
        ToNormalizedFloat(mean, std)(image.float())


def test_splits_held_in_memory_are_resized_once_and_give_the_same_pixels():
    from torchvision.transforms import v2

    dm = DigitsDataModule(image_size=24)
    dm.setup("fit")
    test = dm.datasets["test"]
    assert tuple(test.images.shape[-2:]) == (24, 24)  # resized at setup ...
    assert not any(isinstance(t, v2.Resize) for t in test.transform.transforms)  # ... not per item
    raw = dm.load_splits()["test"].images
    per_item = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((24, 24), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(dm.mean, dm.std),
        ]
    )
    for i in (0, 17, len(test) - 1):
        assert torch.equal(test[i][0], per_item(raw[int(test.indices[i])]))


@pytest.mark.parametrize("on_device", ["auto", False])
def test_the_input_spec_a_checkpoint_records_is_what_the_net_is_fed_and_draws_nothing(tmp_path, on_device):
    overrides = [*FAST, "data=digits", "data.image_size=20", f"data.on_device={on_device}"]
    datamodule = hydra.utils.instantiate(compose_config(overrides, tmp_path).data)
    datamodule.setup("fit")
    torch.manual_seed(0)
    before = torch.get_rng_state()
    spec = datamodule.input_spec()
    assert torch.equal(before, torch.get_rng_state())  # recording it leaves the run's randomness alone
    assert spec["image_size"] == 20 and spec["channels"] == 3
    assert spec["mean"] == [round(float(m), 4) for m in datamodule.mean] and len(spec["std"]) == 3
