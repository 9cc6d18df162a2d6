"""The on-device data path: exact crops, the PIL path's augmentation distribution, loaders, training."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from omegaconf import OmegaConf
from scipy.stats import chi2_contingency
from torchvision.transforms import v2

from conftest import PAIR, write_image_tree
from transferlab.data import ImageFolderDataModule
from transferlab.data.base import RandomCropFlip
from transferlab.data.device import DeviceLoader, TransferLoader, random_crop_flip
from transferlab.data.sklearn_digits import DigitsDataModule
from transferlab.train import train


def marker_image(size: int = 8) -> torch.Tensor:
    """A uint8 (1, 3, S, S) image that is dark except one bright pixel off the centre."""
    image = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    image[0, :, 2, 5] = 255
    return image


def outcome(image: torch.Tensor) -> tuple[int, ...]:
    """Where the marker landed (or (-1, -1) if it was cropped away)."""
    found = (image[0] == 255).nonzero()
    return tuple(found[0].tolist()) if len(found) else (-1, -1)


def augment_with_torchvision(image: torch.Tensor, padding: int, times: int) -> Counter:
    augment = v2.Compose([v2.RandomCrop(image.shape[-1], padding=padding), v2.RandomHorizontalFlip()])
    return Counter(outcome(augment(image[0])[None]) for _ in range(times))


def augment_on_device(image: torch.Tensor, padding: int, times: int) -> Counter:
    batch = image.expand(times, -1, -1, -1).contiguous()
    out = random_crop_flip(batch, padding, flip=True)
    return Counter(outcome(out[i : i + 1]) for i in range(times))


def homogeneity_p(a: Counter, b: Counter) -> float:
    keys = sorted(set(a) | set(b))
    return chi2_contingency(np.array([[a[k] for k in keys], [b[k] for k in keys]]))[1]


def augment_per_image(image: torch.Tensor, padding: int, times: int) -> Counter:
    augment = RandomCropFlip(padding, flip=True)
    return Counter(outcome(augment(image[0])[None]) for _ in range(times))


@pytest.mark.parametrize("augment", [augment_on_device, augment_per_image], ids=["batched", "per-image"])
def test_the_augmentation_has_the_distribution_of_torchvisions(augment):
    torch.manual_seed(0)
    image, times = marker_image(), 3000
    reference = augment_with_torchvision(image, padding=2, times=times)
    ours = augment(image, padding=2, times=times)
    # the marker can land on 2·(2p+1)² places (some cropped away): every one of them occurs
    assert set(ours) == set(reference) and len(reference) > 30
    assert homogeneity_p(reference, ours) > 1e-3
    # the test has power: a different padding is told apart at once
    assert homogeneity_p(reference, augment(image, padding=1, times=times)) < 1e-6


def test_a_crop_is_the_padded_image_at_its_offset():
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    generator = torch.Generator().manual_seed(3)
    out = random_crop_flip(images, padding=2, flip=False, generator=generator)
    offsets = torch.randint(0, 5, (2, 2), generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(2):
        dy, dx = offsets[0, i], offsets[1, i]
        assert torch.equal(out[i], padded[i, :, dy : dy + 5, dx : dx + 5])


def test_device_loader_shuffles_every_image_once_per_epoch_and_shards_under_ddp():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    labels = torch.arange(10)
    common = {"batch_size": 4, "mean": [0.0] * 3, "std": [1 / 255] * 3, "device": torch.device("cpu")}
    loader = DeviceLoader(images, labels, train=True, **common)
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(10)) and len(loader) == 3
    # a last batch of one image would break BatchNorm: it is dropped, as the DataLoader path does
    odd = DeviceLoader(images[:9], labels[:9], train=True, **common)
    assert len(odd) == 2 and sum(len(y) for _, y in odd) == 8
    for x, y in loader:  # images travel with their labels (value = label after normalisation)
        assert torch.equal(x[:, 0, 0, 0], y.float())
    torch.manual_seed(1)
    shard0 = torch.cat([y for _, y in DeviceLoader(images, labels, rank=0, world_size=2, **common)])
    shard1 = torch.cat([y for _, y in DeviceLoader(images, labels, rank=1, world_size=2, **common)])
    assert len(shard0) == len(shard1) == 5 and set(shard0.tolist()) | set(shard1.tolist()) == set(range(10))


def digits(**options) -> DigitsDataModule:
    datamodule = DigitsDataModule(batch_size=64, image_size=16, mean=[0.3] * 3, std=[0.4] * 3, **options)
    datamodule.setup("fit")
    return datamodule


def test_on_device_evaluation_batches_equal_the_dataloader_path_bit_for_bit():
    plain, device = digits(on_device=False), digits(on_device=True)
    expected = torch.cat([x for x, _ in plain.val_dataloader()])
    got = torch.cat([x for x, _ in device.val_dataloader()])
    assert isinstance(device.val_dataloader(), DeviceLoader)
    assert not isinstance(plain.val_dataloader(), DeviceLoader)
    assert torch.equal(got, expected)  # the same arithmetic in the same order


def test_the_default_holds_data_in_memory_on_the_device_and_streams_files_it_did_not_decode(tmp_path):
    assert isinstance(digits().train_dataloader(), DeviceLoader)  # on_device=auto
    tree = write_image_tree(tmp_path / "tree", {"a": 3, "b": 3})
    streamed = ImageFolderDataModule(root=str(tree), decode=False, batch_size=2, num_workers=0)
    streamed.setup("fit")
    assert not isinstance(streamed.train_dataloader(), DeviceLoader)  # files: the per-image path
    decoded = ImageFolderDataModule(root=str(tree), batch_size=2, num_workers=0)
    decoded.setup("fit")
    assert isinstance(decoded.train_dataloader(), DeviceLoader)


def test_files_too_large_to_hold_stream_as_uint8_batches_augmented_after_the_transfer(tmp_path):
    tree = write_image_tree(tmp_path / "tree", {"a": 5, "b": 5})
    options = {"root": str(tree), "batch_size": 4, "num_workers": 0, "mean": [0.4] * 3, "std": [0.2] * 3}
    streamed = ImageFolderDataModule(decode=False, **options)
    resident = ImageFolderDataModule(decode_dir=str(tmp_path / "cache"), **options)
    for module in (streamed, resident):
        module.setup("fit")
    loader = streamed.train_dataloader()
    assert isinstance(loader, TransferLoader)
    workers_batch = next(iter(loader.loader))[0]
    assert workers_batch.dtype == torch.uint8  # the workers decode and resize, nothing more
    images, labels = next(iter(loader))
    assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32) and labels.dtype == torch.long
    before = streamed.generator(torch.device("cpu")).get_state()
    list(loader)
    assert not torch.equal(before, streamed.generator(torch.device("cpu")).get_state())  # crops drawn there
    got = torch.cat([x for x, _ in streamed.test_dataloader()])
    expected = torch.cat([x for x, _ in resident.test_dataloader()])
    assert torch.equal(got, expected)  # evaluation: the same pixels either way


def test_the_streamed_route_gives_each_process_its_shard_and_a_new_order_each_epoch(tmp_path):
    tree = write_image_tree(tmp_path / "tree", {"a": 5, "b": 5})

    def positions(rank: int, epoch: int) -> list[int]:
        module = ImageFolderDataModule(root=str(tree), decode=False, batch_size=4, num_workers=0)
        module.setup("fit")
        module.with_positions()
        cpu = SimpleNamespace(root_device=torch.device("cpu"))
        module.trainer = SimpleNamespace(world_size=2, global_rank=rank, strategy=cpu)
        loader = module.train_dataloader()
        loader.sampler.set_epoch(epoch)  # what Lightning does through TransferLoader.sampler
        return torch.cat([batch[2] for batch in loader]).tolist()

    first, second = positions(0, 0), positions(1, 0)  # 8 training images (2 carved for validation)
    assert len(first) == len(second) == 4 and set(first) | set(second) == set(range(8))
    assert positions(0, 0) == first and positions(0, 1) != first  # seeded alike; reshuffled per epoch


def test_the_loader_draws_from_its_generator_and_never_from_the_global_one():
    datamodule = digits()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = [x for x, _ in datamodule.train_dataloader()]
    assert torch.equal(torch.get_rng_state(), before)  # crops, flips and order: the generator's
    torch.manual_seed(0)
    fresh = digits()  # seeded from torch.initial_seed(): the run's seed
    assert all(
        torch.equal(a, b) for a, b in zip(first, [x for x, _ in fresh.train_dataloader()], strict=True)
    )


def test_the_generator_travels_in_the_datamodule_state_so_a_resumed_epoch_is_the_same():
    torch.manual_seed(3)
    original = digits()
    list(original.train_dataloader())  # epoch 1
    state = original.state_dict()
    expected = [x for x, _ in original.train_dataloader()]  # epoch 2
    torch.manual_seed(99)  # a resumed process starts from other global states
    resumed = digits()
    resumed.load_state_dict(state)  # before its loader exists, as Lightning restores it
    got = [x for x, _ in resumed.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert torch.equal(torch.get_rng_state(), state["global"]["torch"])  # the global ones too


@pytest.mark.parametrize("on_device", [True, False], ids=["resident", "streamed"])
def test_a_sample_taken_at_setup_leaves_the_training_streams_where_they_were(on_device):
    from transferlab.losses.slot import training_sample

    torch.manual_seed(0)
    datamodule = digits(on_device=on_device)
    first, _ = training_sample(datamodule, 40)
    again, _ = training_sample(datamodule, 40)
    assert torch.equal(first, again)  # the same draws: nothing moved
    torch.manual_seed(0)
    untouched = digits(on_device=on_device)
    expected = [x for x, _ in untouched.train_dataloader()]
    got = [x for x, _ in datamodule.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


def test_a_domain_pair_feeds_both_domains_from_the_device_each_with_its_own_stream(fast_cfg):
    pair = hydra.utils.instantiate(fast_cfg(*PAIR, "method=dann").data)
    pair.setup("fit")
    batch = next(iter(pair.train_dataloader()))
    source, target = batch[0]["source"], batch[0]["target"]
    assert isinstance(target, torch.Tensor) and target.ndim == 4  # the target's images, no labels
    assert source[0].shape == target.shape
    cpu = torch.device("cpu")
    assert not torch.equal(pair.source.generator(cpu).get_state(), pair.target.generator(cpu).get_state())
    assert set(pair.state_dict()) == {"source", "target"}


def test_the_tta_stream_is_every_test_image_once_in_an_order_its_seed_sets():
    from transferlab.eval import test_stream

    datamodule = digits()
    labels = datamodule.datasets["test"].labels

    def stream(seed: int, order: str = "shuffled") -> torch.Tensor:
        cfg = OmegaConf.create({"seed": seed, "stream": order})
        loader = test_stream(datamodule, cfg, 32, torch.device("cpu"))
        assert isinstance(loader, DeviceLoader)
        return torch.cat([y for _, y in loader])

    assert torch.equal(stream(5), stream(5)) and not torch.equal(stream(5), stream(6))
    assert torch.equal(stream(5).sort().values, labels.sort().values)  # every image once
    assert torch.equal(stream(5, "sorted"), labels)  # the files' order


class Layouts(Callback):
    def __init__(self) -> None:
        self.seen: set[bool] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.add(batch[0].is_contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("extra", [["data.on_device=true"], ["data.on_device=true", "channels_last=true"]])
def test_training_with_the_data_on_the_device_learns(fast_cfg, extra):
    layouts = Layouts()
    summary = train(fast_cfg("trainer.max_epochs=4", *extra), [layouts])
    assert layouts.seen == {"channels_last=true" in extra}  # the batches arrive as the net wants them
    assert summary["final"]["val/acc"] > 0.45  # four classes: chance is 0.25
    assert Path(summary["best"]["ckpt_path"]).is_file()


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_padding_is_torchvisions_in_each_mode(mode, dtype):
    from torchvision.transforms.v2 import functional as TF

    from transferlab.data.device import pad

    images = torch.randint(0, 255, (2, 3, 6, 6)).to(dtype)
    want = TF.pad(images, [3], padding_mode=mode)
    got = pad(images, 3, mode)
    assert got.dtype == dtype and torch.equal(got, want)
    if mode == "reflect":  # the crops near a border see mirrored pixels, not black
        assert torch.equal(got[..., 3:9, 0], images[..., :, 3])


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "per-image"])
def test_a_reflect_padded_crop_is_a_window_of_the_mirrored_image(batched):
    from torchvision.transforms.v2 import functional as TF

    torch.manual_seed(1)
    image = torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8)
    mirrored = TF.pad(image, [2], padding_mode="reflect")
    windows = {mirrored[:, r : r + 8, c : c + 8].numpy().tobytes() for r in range(5) for c in range(5)}
    if batched:
        out = random_crop_flip(image.expand(64, -1, -1, -1), 2, False, padding_mode="reflect")
        crops = [out[i] for i in range(64)]
    else:
        augment = RandomCropFlip(2, flip=False, padding_mode="reflect")
        crops = [augment(image) for _ in range(64)]
    assert all(crop.numpy().tobytes() in windows for crop in crops)
    assert len({crop.numpy().tobytes() for crop in crops}) > 10  # many offsets, all of them windows


def test_an_unknown_padding_mode_is_one_line():
    from transferlab.data.synthetic import SyntheticDataModule
    from transferlab.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.crop_padding_mode=.mirror."):
        SyntheticDataModule(crop_padding_mode="mirror")
