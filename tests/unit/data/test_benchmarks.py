"""The published adaptation benchmarks' datamodules on trees written in their real layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import compose_config, write_benchmark
from transferlab.data import DomainBenchmarkDataModule
from transferlab.data.benchmarks import BENCHMARKS
from transferlab.utils.errors import ConfigError, DataError


def domain(root: Path, benchmark: str, name: str, **kwargs) -> DomainBenchmarkDataModule:
    kwargs = {"image_size": 16, "download": False, "decode": False, "on_device": False, **kwargs}
    return DomainBenchmarkDataModule(benchmark, name, str(root), **kwargs)


def test_office31_with_the_published_image_counts(tmp_path: Path):
    """Every image of Office-31's three domains, as many as published (2,817 / 498 / 795 in 31
    classes), read through their image lists."""
    counts = {name: d.images for name, d in BENCHMARKS["office31"].domains.items()}
    assert counts == {"amazon": 2817, "dslr": 498, "webcam": 795}
    root = tmp_path / "office31"
    write_benchmark(root, "office31", per_class=1, size=4)
    for name, total in counts.items():  # the published totals: whole per-class runs and the rest
        lines = (root / "image_list" / f"{name}.txt").read_text().splitlines()
        extra = total - len(lines)
        first = lines[0].rsplit(" ", 1)
        for i in range(extra):
            path = root / first[0].replace(".jpg", f"_{i}.jpg")
            shutil.copy(root / first[0], path)
            lines.append(f"{path.relative_to(root)} {first[1]}")
        (root / "image_list" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    for name, total in counts.items():
        data = domain(root, "office31", name, val_fraction=0.0)
        data.setup()
        assert data.num_classes == 31
        assert len(data.datasets["test"]) == total  # the whole domain is tested (transductive)
        assert len(data.datasets["train"]) == total


@pytest.mark.parametrize(
    ("benchmark", "short", "classes"),
    [("office31", "W", 31), ("officehome", "Cl", 65), ("visda2017", "Real", 12), ("domainnet", "s", 345)],
)
def test_every_benchmark_reads_its_layout_and_short_names(tmp_path: Path, benchmark, short, classes):
    root = write_benchmark(tmp_path / benchmark, benchmark, per_class=2)
    data = domain(root, benchmark, short, val_fraction=0.5)
    data.setup()
    assert data.num_classes == classes
    assert data.class_names[:2] == ["class_000", "class_001"]  # named by their folders, in label order
    images, _ = data.datasets["train"][0][:2]
    assert images.shape == (3, 16, 16)
    if benchmark == "domainnet":  # its own train and test lists
        test_files = {str(p) for p in data.datasets["test"].images.paths}
        assert all("_test_" in Path(p).name for p in test_files)
    else:  # the test split is the whole domain: the validation images carved from the same list
        assert len(data.datasets["test"]) == 2 * classes
        assert len(data.datasets["train"]) + len(data.datasets["val"]) == 2 * classes


def test_an_office31_pair_trains_every_step_on_both_domains(tmp_path: Path):
    """The pair config: exactly ``iterations_per_epoch`` batches an epoch, however small the domains."""
    root = write_benchmark(tmp_path / "office31", "office31", per_class=2, domains=["amazon", "webcam"])
    cfg = compose_config(
        [
            "data=office31",
            f"data.source.root={root}",
            f"data.target.root={root}",
            "data.source.download=false",
            "data.target.download=false",
            "data.image_size=16",
            "data.batch_size=8",
            "data.iterations_per_epoch=13",
            "data.source.num_workers=0",
            "data.target.num_workers=0",
        ],
        tmp_path / "run",
    )
    from hydra.utils import instantiate

    data = instantiate(cfg.data)
    data.setup()
    batches = list(data.train_dataloader())
    assert len(batches) == 13
    batch = batches[0][0] if isinstance(batches[0], tuple) else batches[0]
    assert batch["source"][0].shape == (8, 3, 16, 16) and batch["target"].shape == (8, 3, 16, 16)
    assert data.num_classes == 31


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda root: None, "is not a domain of Office-31"),
        (lambda root: shutil.rmtree(root / "webcam"), "does not exist; expected"),
        (lambda root: (root / "image_list" / "webcam.txt").unlink(), "image list"),
        (lambda root: next((root / "webcam").rglob("*.jpg")).unlink(), "images listed in"),
        (
            lambda root: (root / "image_list" / "webcam.txt").write_text("webcam/images/a.jpg zero\n"),
            "is not '<relative path> <label>'",
        ),
        (
            lambda root: (root / "image_list" / "webcam.txt").write_text(
                "\n".join((root / "image_list" / "webcam.txt").read_text().splitlines()[:-2])
            ),
            "has 30 classes where Office-31 has 31",
        ),
    ],
)
def test_bad_trees_and_names_are_one_line_errors(tmp_path: Path, change, message):
    root = write_benchmark(tmp_path / "office31", "office31", per_class=2, domains=["webcam"])
    change(root)
    name = "kitchen" if "not a domain" in message else "webcam"
    with pytest.raises((DataError, ConfigError)) as err:
        domain(root, "office31", name).setup()
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_benchmark_is_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"data.benchmark='office32'; use one of office31"):
        domain(tmp_path, "office32", "amazon")


@pytest.fixture
def http_folder():
    """``serve(folder) -> base URL``: a real HTTP server on localhost for the test's archives."""
    import functools
    import http.server
    import threading

    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()


def test_download_on_first_use_fetches_the_lists_and_the_domain(tmp_path: Path, monkeypatch, http_folder):
    """The download path with the reference library's archive names, over HTTP from localhost (no
    network here); a failed download is one line with the URL."""
    built = write_benchmark(tmp_path / "built", "office31", per_class=2, domains=["dslr"])
    archives = tmp_path / "archives"
    archives.mkdir()
    spec = BENCHMARKS["office31"]
    # served where the reference library's cloud serves them: by file id
    shutil.make_archive(str(archives / "lists"), "zip", built, "image_list")
    (archives / "lists.zip").rename(archives / spec.downloads["image_list"])
    shutil.make_archive(str(archives / "dslr"), "gztar", built, "dslr")
    (archives / "dslr.tar.gz").rename(archives / spec.downloads["dslr"])
    url = http_folder(archives)
    monkeypatch.setattr("transferlab.data.benchmarks.CLOUD", url + "/{}")
    root = tmp_path / "fresh"
    data = domain(root, "office31", "D", download=True)
    data.prepare_data()  # as Lightning and train() call it, before setup
    data.setup()
    assert data.num_classes == 31 and (root / "dslr" / "images").is_dir()
    assert sorted(p.name for p in root.iterdir()) == ["dslr", "dslr.tgz", "image_list", "image_list.zip"]

    missing = spec.downloads["webcam"]  # not served
    with pytest.raises(DataError, match=rf"downloading http://.*/{missing} failed .*unpack it under") as err:
        domain(root, "office31", "webcam", download=True).prepare_data()
    assert "\n" not in str(err.value)


def test_random_resized_crop_draws_torchvisions_boxes():
    """The batched crop draws the boxes torchvision's ``RandomResizedCrop.get_params`` draws (the
    same distribution of area share, aspect ratio and position, 20,000 draws each), inside the
    image; a full-size box is the identity."""
    from torchvision.transforms import RandomResizedCrop

    from transferlab.data.device import random_resized_crop, resized_crop_boxes

    g = torch.Generator().manual_seed(0)
    boxes = resized_crop_boxes(20000, 224, 160, (0.08, 1.0), generator=g)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= 160 and boxes[:, 3].max() <= 224
    torch.manual_seed(0)
    reference = torch.tensor(
        [
            RandomResizedCrop.get_params(torch.zeros(3, 224, 160), (0.08, 1.0), (3 / 4, 4 / 3))
            for _ in range(20_000)
        ],
        dtype=torch.float32,
    )  # (top, left, height, width)
    ours = torch.stack([boxes[:, 1], boxes[:, 0], h, w], dim=1)
    for column in range(4):  # mean and spread within 2% of the image side (sampling error ~0.5%)
        assert abs(ours[:, column].mean() - reference[:, column].mean()) < 0.02 * 224
        assert abs(ours[:, column].std() - reference[:, column].std()) < 0.02 * 224
    share = (w * h).mean() / (224 * 160)
    reference_share = (reference[:, 2] * reference[:, 3]).mean() / (224 * 160)
    assert abs(share - reference_share) < 0.01
    ratio, reference_ratio = (w / h), reference[:, 3] / reference[:, 2]
    assert ratio.min() >= reference_ratio.min() - 0.01 and ratio.max() <= reference_ratio.max() + 0.01
    # the aspect ratio log-uniform: on a square image log(w/h) is centred on 0 (uniform: +0.03)
    square = resized_crop_boxes(20000, 224, 224, (0.08, 1.0), generator=g)
    log_ratio = torch.log((square[:, 2] - square[:, 0]) / (square[:, 3] - square[:, 1]))
    assert abs(log_ratio.mean()) < 0.008  # sampling error 0.0012
    images = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8)
    assert torch.equal(random_resized_crop(images, (1.0, 1.0), (1.0, 1.0)), images)
