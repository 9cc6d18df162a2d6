"""What transferred, in pictures: the features of both domains at the start and the end of
training, as the proxy A-distance, a t-SNE figure and TensorBoard's embedding projector."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch.nn import functional as F

from transferlab.analysis.feature_space import a_distance, tsne_figure
from transferlab.data.subsets import spread_positions
from transferlab.transferability.extract import extract
from transferlab.utils.errors import ConfigError
from transferlab.utils.log import log

THUMBNAIL = 32  # the projector's sprite: side of each image


class FeatureSpace(Callback):
    """At the start (a fresh run's first step) and the end of training, the net's features of
    ``images`` un-augmented training images of each domain (evenly spread over the split: the
    class folders' order), and from them:

    - the proxy A-distance (``analysis.feature_space.a_distance``), logged as
      ``feature/a_distance_start`` and ``feature/a_distance_end`` (in ``metrics.json``'s final
      metrics, so a sweep's summary has it per arm) and in ``reports.feature_space``;
    - a t-SNE figure coloured by domain and by class (``<out_dir>/tsne_end.png``, and in
      TensorBoard's Images; ``tsne="both"`` the start's too, ``tsne_start.png``; a t-SNE of 1,000
      points takes a few seconds on 2 CPU cores, up to 12 with the machine shared);
    - the features in TensorBoard's embedding projector, with each image's domain and class as
      metadata and its thumbnail.

    The domains: a domain pair's source and target (the target's labels colour the picture only);
    any other data, its training and test splits. ``enabled``: ``auto`` (domain pairs), true or
    false. The end is the final weights (not the checkpoint a validator picks).
    """

    def __init__(
        self,
        enabled: bool | str = "auto",
        images: int = 500,
        tsne: bool | str = "end",
        projector: bool = True,
        out_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        if enabled not in (True, False, "auto"):
            raise ConfigError(f"feature_space.enabled={enabled!r}; use auto, true or false")
        if images < 10:
            raise ConfigError(f"feature_space.images={images}: give at least 10 images per domain")
        if tsne not in (True, False, "end", "both"):
            raise ConfigError(f"feature_space.tsne={tsne!r}; use end, both (the start too) or false")
        self.enabled, self.images, self.tsne, self.projector = enabled, images, tsne, projector
        self.out_dir = Path(out_dir) if out_dir else None
        self.seed = seed

    def applies(self, datamodule: Any) -> bool:
        if self.enabled == "auto":
            return hasattr(datamodule, "source") and hasattr(datamodule, "target")
        return bool(self.enabled)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        measured = pl_module.reports.get("feature_space", {}).get("a_distance_start")
        if measured is not None:  # a resumed run: the first run's start, in this run's metrics too
            trainer.callback_metrics["feature/a_distance_start"] = torch.tensor(float(measured))
        elif trainer.global_step == 0:
            self.measure("start", trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.measure("end", trainer, pl_module)

    def measure(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        started = time.perf_counter()
        value = None
        if trainer.is_global_zero:
            domains = self.domains(trainer.datamodule)
            features = {name: self.features(pl_module, dataset) for name, dataset in domains.items()}
            (first, (f_s, y_s, x_s)), (second, (f_t, y_t, x_t)) = features.items()
            value = a_distance(f_s, f_t, seed=self.seed)
            step = trainer.global_step
            class_names = list(trainer.datamodule.class_names)
            if self.out_dir is not None and (
                self.tsne in (True, "both") or (self.tsne == "end" and stage == "end")
            ):
                path = tsne_figure(
                    f_s,
                    f_t,
                    y_s,
                    y_t,
                    self.out_dir / f"tsne_{stage}.png",
                    title=f"{first} vs {second}, {stage} of training (step {step}): A-distance {value:.3f}",
                    class_names=class_names,
                    seed=self.seed,
                )
                self.log_image(trainer, f"feature_space/tsne_{stage}", path, step)
            if self.projector:
                domains_out = ((first, f_s, y_s, x_s), (second, f_t, y_t, x_t))
                self.log_embedding(trainer, stage, step, domains_out, class_names)
            log.info(
                "feature space at the %s of training: A-distance %s vs %s = %.3f", stage, first, second, value
            )
        value = trainer.strategy.broadcast(value, src=0)
        record = pl_module.reports.setdefault("feature_space", {})
        record[f"a_distance_{stage}"] = round(float(value), 4)
        record[f"{stage}_seconds"] = round(time.perf_counter() - started, 2)
        trainer.callback_metrics[f"feature/a_distance_{stage}"] = torch.tensor(float(value))
        for logger in trainer.loggers:
            logger.log_metrics({f"feature/a_distance_{stage}": float(value)}, step=trainer.global_step)

    def domains(self, datamodule: Any) -> dict[str, Any]:
        if hasattr(datamodule, "source") and hasattr(datamodule, "target"):
            return {
                "source": datamodule.source.clean_train_dataset(),
                "target": datamodule.target.clean_train_dataset(),
            }
        return {"train": datamodule.clean_train_dataset(), "test": datamodule.datasets["test"]}

    def features(
        self, pl_module: L.LightningModule, dataset: Any
    ) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
        """(features (n, D), labels (n,), thumbnails (n, C, 32, 32) or None without the
        projector) of ``images`` images evenly spread over ``dataset``."""
        sample = dataset.subset(spread_positions(len(dataset), self.images))
        features, _ = extract(pl_module.net, sample, device=pl_module.device)
        thumbnails = None
        if self.projector:  # normalised, as the net saw them (log_embedding undoes it)
            images = torch.stack([sample[i][0] for i in range(len(sample))])
            thumbnails = F.interpolate(images, size=THUMBNAIL, mode="bilinear", antialias=True)
        return features, sample.labels.numpy(), thumbnails

    def log_image(self, trainer: L.Trainer, tag: str, path: Path, step: int) -> None:
        import matplotlib.image

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                pixels = matplotlib.image.imread(str(path))[..., :3]
                logger.experiment.add_image(tag, pixels, global_step=step, dataformats="HWC")

    def log_embedding(
        self, trainer: L.Trainer, stage: str, step: int, domains: tuple, class_names: list[str]
    ) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not loggers:
            return
        datamodule = trainer.datamodule
        normalised = datamodule.source if hasattr(datamodule, "source") else datamodule
        mean = torch.tensor(normalised.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(normalised.std, dtype=torch.float32).view(1, -1, 1, 1)
        matrix = torch.from_numpy(np.concatenate([d[1] for d in domains]))
        metadata = [[name, class_names[int(y)]] for name, _, labels, _ in domains for y in labels]
        thumbnails = torch.cat([d[3] for d in domains]).mul(std).add(mean).clamp(0, 1)
        for logger in loggers:
            logger.experiment.add_embedding(
                matrix,
                metadata=metadata,
                metadata_header=["domain", "class"],
                label_img=thumbnails,
                global_step=step,
                tag=f"features_{stage}",
            )
