"""Rank candidate sources for a target before fine-tuning any of them:
``python -m transferlab.rank data=<target> 'candidates=[<run dir>,<checkpoint>,random:cnn]'``.

Each candidate's features (and its predictions over its own classes, for LEEP and NCE) on the
target's training images (the data's label budget, ``data.train_per_class``, applies; no
augmentation) are extracted in one pass, scored (``transferability``: LogME, LEEP, NCE, H-score,
TransRate) and the candidates ranked by each score. Written to the run directory as
``ranking.csv`` and ``ranking.md``, and to TensorBoard as text. A candidate is a run directory or
a checkpoint written by ``transferlab.train``, ``random:<net>`` (that net with random weights: what
training from scratch starts from) or ``torchvision:<arch>[:<weights>]`` (its features only: the
ImageNet head is not kept).
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from transferlab.nets.base import Classifier
from transferlab.nets.reference import build_net
from transferlab.transferability.base import load_scores
from transferlab.transferability.extract import extract, score_all
from transferlab.utils.checkpoint import open_checkpoint
from transferlab.utils.config import project_root, register_resolvers
from transferlab.utils.contract import RunContract, check_handed
from transferlab.utils.entry import preflight, silence_known_warnings, user_errors
from transferlab.utils.errors import ConfigError
from transferlab.utils.log import log
from transferlab.utils.run_files import write_json_atomic
from transferlab.utils.schema import validate_config

register_resolvers()


@dataclass
class Candidate:
    name: str
    net: Classifier
    with_predictions: bool  # whether its head is the source's (LEEP and NCE read it)
    input_size: int | None  # the image side its net requires (None: any)
    in_channels: int
    contract: RunContract | None = None  # a trained candidate's: what it was fed


def load_candidate(spec: str, image_size: int, seed: int) -> Candidate:
    """A candidate from its spec: a run directory or checkpoint, ``random:<net>``, or
    ``torchvision:<arch>[:<weights>]``."""
    spec = str(spec)
    if spec.startswith("random:"):
        option = spec.split(":", 1)[1]
        path = Path(project_root()) / "conf" / "net" / f"{option}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise ConfigError(f"candidate {spec}: no net {option!r}; known nets: {', '.join(known)}")
        node = OmegaConf.load(path)
        node.input_size = image_size if "input_size" in node else None
        node = OmegaConf.create({k: v for k, v in OmegaConf.to_container(node).items() if v is not None})
        torch.manual_seed(seed)
        net = hydra.utils.instantiate(node, num_classes=10)
        return Candidate(spec, net, True, None, int(node.get("in_channels", 3)))
    if spec.startswith("torchvision:"):
        _, arch, *weights = spec.split(":")
        from transferlab.nets.torchvision_net import torchvision_net

        net = torchvision_net(arch=arch, num_classes=10, weights=weights[0] if weights else None)
        return Candidate(spec, net, False, None, 3)
    checkpoint = open_checkpoint(spec, "candidates")
    net_config = checkpoint.contract.net
    return Candidate(
        spec,
        build_net(checkpoint),
        True,
        net_config.get("input_size"),
        int(net_config.get("in_channels", 3)),
        checkpoint.contract,
    )


def check_fit(candidate: Candidate, image_size: int, channels: int) -> None:
    """Refuse, in one line, a candidate whose net cannot read the target's images."""
    if candidate.in_channels != channels:
        raise ConfigError(
            f"candidate {candidate.name} takes {candidate.in_channels}-channel images and the target's have "
            f"{channels}; rank candidates of the target's kind"
        )
    if candidate.input_size is not None and candidate.input_size != image_size:
        raise ConfigError(
            f"candidate {candidate.name} takes {candidate.input_size}-px images and the target's are "
            f"{image_size} px (data.image_size); rank it at its size or pick candidates that fit"
        )


def rank(cfg: DictConfig) -> list[dict[str, Any]]:
    """Score every candidate of ``cfg.candidates`` on ``cfg.data``; write and return the table."""
    validate_config(cfg, ("data",))  # typos, types and ranges: before any work
    specs = list(cfg.get("candidates") or [])
    if len(specs) < 2:
        raise ConfigError(
            f"candidates lists {len(specs)} source(s); ranking needs at least two "
            f"('candidates=[<run dir>,<checkpoint>,random:cnn]')"
        )
    scores = load_scores(cfg.get("scores"), "scores")
    names = list(scores)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if datamodule.num_classes < 2:
        raise ConfigError(
            f"the target has {datamodule.num_classes} class; a transferability score compares how "
            f"well a source separates the target's classes: give it two or more (data.classes)"
        )
    dataset = datamodule.clean_train_dataset()
    labels = dataset.labels.numpy()
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.get("accelerator") == "gpu" else "cpu")
    rows = []
    channels = int(dataset[0][0].shape[0])
    candidates = [load_candidate(spec, datamodule.image_size, int(cfg.seed)) for spec in specs]
    target = RunContract(net={}, num_classes=datamodule.num_classes, inputs=datamodule.input_spec())
    for candidate in candidates:  # every candidate checked before any is scored
        if candidate.contract is not None:
            check_handed(candidate.contract, target, "rank", f"candidates: {candidate.name}")
        check_fit(candidate, datamodule.image_size, channels)
    for spec, candidate in zip(specs, candidates, strict=True):
        start = time.perf_counter()
        features, probabilities = extract(
            candidate.net, dataset, int(cfg.batch_size), device, desc=Path(str(spec)).name or str(spec)
        )
        values = score_all(features, probabilities if candidate.with_predictions else None, labels, scores)
        seconds = round(time.perf_counter() - start, 3)  # extraction and every score
        rows.append(
            {"candidate": candidate.name, "feature_dim": features.shape[1], "seconds": seconds, **values}
        )
        log.info("%s: %s", candidate.name, {k: round(v, 4) for k, v in values.items()})
    for name in names:  # rank 1 = the best by that score
        order = sorted((r for r in rows if name in r), key=lambda r: -r[name])
        for position, row in enumerate(order, start=1):
            row[f"{name}_rank"] = position
    write_ranking(Path(cfg.paths.output_dir), rows, names, len(labels), datamodule.num_classes)
    return rows


def write_ranking(out: Path, rows: list[dict[str, Any]], names: list[str], images: int, classes: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = ["candidate", "feature_dim", "seconds", *[c for n in names for c in (n, f"{n}_rank")]]
    with open(out / "ranking.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Transferability of {len(rows)} candidates to the target ({images} training images, {classes} "
        f"classes); each score's rank in brackets (1: the best by it).",
        "",
        "| candidate | " + " | ".join(names) + " | seconds |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for row in sorted(rows, key=lambda r: r.get(f"{names[0]}_rank", 0)):
        cells = [f"{row[n]:.4f} ({row[f'{n}_rank']})" if n in row else "—" for n in names]
        lines.append(f"| {row['candidate']} | " + " | ".join(cells) + f" | {row['seconds']:.1f} |")
    text = "\n".join(lines) + "\n"
    (out / "ranking.md").write_text(text)
    write_json_atomic(out / "ranking.json", rows)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(out / "tensorboard")) as writer:
        writer.add_text("ranking", text)
    print(text, end="")
    print(f"wrote {out / 'ranking.md'}, ranking.csv and TensorBoard text in {out / 'tensorboard'}")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="rank")
def hydra_main(cfg: DictConfig) -> None:
    silence_known_warnings()
    with user_errors():
        rank(cfg)


def main() -> None:
    preflight("rank", sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()
