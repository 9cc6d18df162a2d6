"""The domain-adaptation benchmarks papers report: Office-31, Office-Home, VisDA-2017 and DomainNet,
one domain at a time, in the layout and with the image lists of the reference library
(thuml/Transfer-Learning-Library): ``<root>/image_list/<list>.txt`` with one ``<relative path>
<label>`` per line, the images under ``<root>/<domain folder>/…``.

    data=office31 data.source.domain=amazon data.target.domain=webcam     (a domain pair)
    data=benchmark_domain data.benchmark=officehome data.domain=Art       (one domain)

Office-31, Office-Home and VisDA-2017 publish one list per domain and evaluate on the whole target
domain (the transductive protocol every paper follows: the unlabelled images adapted on are the
images tested on), so a domain's test split is its list and its training split the same list, the
validation images carved out of it. DomainNet publishes a train and a test list per domain.

The published lists are downloaded on first use where they are public (``download: true``); offline,
one line names the URL and the expected layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.data.base import ClassificationDataModule, RawSplit
from transferlab.data.imagefolder import ImageFiles
from transferlab.utils.errors import ConfigError, DataError
from transferlab.utils.log import log

CLOUD = "https://cloud.tsinghua.edu.cn/f/{}/?dl=1"  # where the reference library's archives are
DOWNLOAD_KEYS = "set data.download=true (in a pair data.source.download, data.target.download)"
#: ImageNet's normalisation: the benchmarks are run from ImageNet-pretrained backbones
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Domain:
    folder: str  # the domain's folder under the root (its archive unpacks to it)
    lists: dict[str, str]  # split -> image list file under <root>/image_list
    images: int  # published image count over its lists
    aliases: tuple[str, ...] = ()  # the reference library's short names (A, W, D; Ar, Cl, …)


@dataclass(frozen=True)
class Benchmark:
    name: str
    classes: int  # published number of classes
    domains: dict[str, Domain]
    #: what an archive unpacks to under the root -> the reference library's file id on its
    #: cloud (``archive``: its name and URL)
    downloads: dict[str, str] = field(default_factory=dict)
    paper: str = ""

    def archive(self, part: str) -> tuple[str, str]:
        """(archive name, URL) of ``part``: the image lists are a zip, each domain a tarball."""
        name = "image_list.zip" if part == "image_list" else f"{part}.tgz"
        return name, CLOUD.format(self.downloads[part])

    def domain(self, name: str) -> tuple[str, Domain]:
        for key, domain in self.domains.items():
            if name == key or name in domain.aliases:
                return key, domain
        known = ", ".join(f"{key} ({'/'.join(d.aliases)})" for key, d in self.domains.items())
        raise ConfigError(f"data.domain={name!r} is not a domain of {self.name}; use one of {known}")


def _one_list(folder: str, images: int, *aliases: str) -> Domain:
    return Domain(folder, {"train": f"{folder}.txt", "test": f"{folder}.txt"}, images, aliases)


BENCHMARKS: dict[str, Benchmark] = {
    "office31": Benchmark(
        "Office-31",
        31,
        {
            "amazon": _one_list("amazon", 2817, "A"),
            "dslr": _one_list("dslr", 498, "D"),
            "webcam": _one_list("webcam", 795, "W"),
        },
        {
            "image_list": "2c1dd9fbcaa9455aa4ad",
            "amazon": "ec12dfcddade43ab8101",
            "dslr": "a41d818ae2f34da7bb32",
            "webcam": "8a41009a166e4131adcd",
        },
        "Saenko et al., ECCV 2010",
    ),
    "officehome": Benchmark(
        "Office-Home",
        65,
        {
            "Art": _one_list("Art", 2427, "Ar"),
            "Clipart": _one_list("Clipart", 4365, "Cl"),
            "Product": _one_list("Product", 4439, "Pr"),
            "Real_World": _one_list("Real_World", 4357, "Rw"),
        },
        {
            "image_list": "1b0171a188944313b1f5",
            "Art": "6a006656b9a14567ade2",
            "Clipart": "ae88aa31d2d7411dad79",
            "Product": "f219b0ff35e142b3ab48",
            "Real_World": "6c19f3f15bb24ed3951a",
        },
        "Venkateswara et al., CVPR 2017",
    ),
    "visda2017": Benchmark(
        "VisDA-2017",
        12,
        {
            "Synthetic": Domain("train", {"train": "train.txt", "test": "train.txt"}, 152397, ("train",)),
            "Real": Domain(
                "validation", {"train": "validation.txt", "test": "validation.txt"}, 55388, ("validation",)
            ),
        },
        {
            "image_list": "c107de37b8094c5398dc",
            "train": "c5f3ce59139144ec8221",
            "validation": "da70e4b1cf514ecea562",
        },
        "Peng et al., 2017 (classification track: synthetic train -> real validation)",
    ),
    "domainnet": Benchmark(
        "DomainNet",
        345,
        {
            name: Domain(name, {"train": f"{name}_train.txt", "test": f"{name}_test.txt"}, images, (name[0],))
            for name, images in (
                ("clipart", 48129),
                ("infograph", 51605),
                ("painting", 72266),
                ("quickdraw", 172500),
                ("real", 172947),
                ("sketch", 69128),
            )
        },
        {
            "image_list": "bf0fe327e4b046eb89ba",
            "clipart": "f0515164a4864220b98b",
            "infograph": "98b19d5fc9884109a9cb",
            "painting": "11285ce9fbd34bb7b28c",
            "quickdraw": "6faa9efb498b494abf66",
            "real": "17a101842c564959b525",
            "sketch": "b305add26e9d47349495",
        },
        "Peng et al., ICCV 2019 (the cleaned version)",
    ),
}


def find_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ConfigError(f"data.benchmark={name!r}; use one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def read_image_list(root: Path, list_file: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """The ``<path> <label>`` lines of an image list -> (image paths, labels, class names). A
    class's name is the folder its images are in (``amazon/images/back_pack/frame_0001.jpg 0``:
    back_pack); one label must have one folder name, and every listed file must exist."""
    paths: list[Path] = []
    labels: list[int] = []
    names: dict[int, str] = {}
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        path, _, label = line.strip().rpartition(" ")
        if not path or not label.lstrip("-").isdigit():
            raise DataError(f"{list_file}:{number}: {line!r} is not '<relative path> <label>'; fix the line")
        image, target = root / path.strip(), int(label)
        name = image.parent.name
        if names.setdefault(target, name) != name:
            raise DataError(
                f"{list_file}:{number}: label {target} is '{names[target]}' above and '{name}' here; "
                f"one label per class folder"
            )
        paths.append(image)
        labels.append(target)
    if not paths:
        raise DataError(f"image list {list_file} is empty; download it again (delete it first)")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of the {len(paths)} images listed in {list_file} are missing (e.g. "
            f"{missing[0]}); unpack the domain's archive under {root} again or fix the list"
        )
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{list_file}: labels {sorted(names)} are not 0..{len(names) - 1}; fix the list")
    return paths, np.asarray(labels, dtype=np.int64), [names[i] for i in range(len(names))]


class DomainBenchmarkDataModule(ClassificationDataModule):
    """One domain of a published adaptation benchmark (``benchmark``: office31, officehome,
    visda2017, domainnet; ``domain``: its name or the reference library's short name).

    Args:
        root: the benchmark's folder (``image_list/`` and the domain folders inside).
        download: fetch the image lists and this domain's archive on first use (the reference
            library's links); false: a missing tree is an error naming what to put where.
    """

    default_mean = IMAGENET_MEAN
    default_std = IMAGENET_STD

    def __init__(self, benchmark: str, domain: str, root: str, download: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = find_benchmark(benchmark)
        self.domain, self.domain_spec = self.spec.domain(domain)
        self.root = Path(root)
        self.download = download
        self.name = f"{self.spec.name} {self.domain}"

    def _needed(self) -> list[str]:
        return ["image_list", self.domain_spec.folder]

    def prepare_data(self) -> None:
        missing = [part for part in self._needed() if not (self.root / part).exists()]
        if not missing or not self.download:
            return
        from torchvision.datasets.utils import download_and_extract_archive

        for part in missing:
            archive, url = self.spec.archive(part)
            log.info(f"{self.spec.name}: downloading {archive} into {self.root}")
            try:
                download_and_extract_archive(url, download_root=str(self.root), filename=archive)
            except Exception as err:  # URLError, HTTPError, a bad archive: one line either way
                raise DataError(
                    f"{self.spec.name}: downloading {url} failed ({type(err).__name__}: {err}); download "
                    f"{archive} where there is internet access and unpack it under {self.root} "
                    f"(expected: {self.layout()}), or set data.root to a copy"
                ) from None

    def layout(self) -> str:
        lists = ", ".join(sorted(set(self.domain_spec.lists.values())))
        return f"{self.root}/image_list/{{{lists}}} and {self.root}/{self.domain_spec.folder}/…"

    def load_splits(self) -> dict[str, RawSplit]:
        for part in self._needed():
            if not (self.root / part).is_dir():
                hint = "" if self.download else f"; or let it download: {DOWNLOAD_KEYS}"
                raise DataError(
                    f"{self.spec.name}: '{self.root / part}' does not exist; expected {self.layout()}{hint}"
                )
        read: dict[str, RawSplit] = {}  # by list file: a list that is two splits is read once
        for name in self.domain_spec.lists.values():
            list_file = self.root / "image_list" / name
            if name in read:
                continue
            if not list_file.is_file():
                raise DataError(
                    f"{self.spec.name}: image list {list_file} is missing; expected {self.layout()}"
                )
            paths, labels, classes = read_image_list(self.root, list_file)
            if len(classes) != self.spec.classes:
                raise DataError(
                    f"{list_file} has {len(classes)} classes where {self.spec.name} has {self.spec.classes}; "
                    f"download the published list again"
                )
            read[name] = RawSplit(ImageFiles(paths), labels, classes)
        total = sum(len(split.targets) for split in read.values())
        if total != self.domain_spec.images:
            log.info(
                f"{self.name}: {total} images in its lists, {self.domain_spec.images} published "
                f"({self.spec.paper}): a modified or partial list"
            )
        return {split: read[name] for split, name in self.domain_spec.lists.items()}
