"""A labelled source domain and an unlabelled target domain with the same classes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from transferlab.data.base import ClassificationDataModule, EvalRoute, LabelledImages
from transferlab.data.subsets import take_per_class
from transferlab.utils.errors import ConfigError, DataError
from transferlab.utils.log import log


class DomainPairDataModule(L.LightningDataModule):
    """Training batches ``{"source": (images, labels), "target": images}``, plus
    ``"target_labelled": (images, labels)`` with ``target_labelled_per_class`` > 0.

    Splits with one meaning each. Each domain carves its validation split out of its training
    images (``data.source.val_fraction``, ``data.target.val_fraction``, with their
    ``split_seed``), so the unlabelled target images training sees and the target validation
    images are disjoint. Evaluation loaders are declared by ``evaluation_routes``: validation on
    the source's validation split (``val/…``) and on the target's (``val/target_…``: the images
    feed the label-free validators, their labels only the oracle, ``val/target_acc``); at every
    validation the target's test split too, as a report route (never logged: written to
    ``selection.jsonl`` for the model-selection report, ``report_target_test``); test on the
    target's test split (``test/…``, what adaptation is judged by) and the source's
    (``test/source_…``). Nothing named ``val/…`` is computed on a test split.

    Args:
        source, target: the two domains' datamodules (same class names, in the same order).
        batch_size: the global batch size of each domain's training batches.
        image_size: the side of both domains' images (one net sees both).
        target_labelled_per_class: N target training images per class whose labels training may
            use (semi-supervised adaptation; chosen with the target's ``subset_seed``). They
            leave the unlabelled set. 0: none, the unsupervised setting.
        report_target_test: at every validation, also the target's test accuracy, written (not
            logged) for the model-selection report of a sweep.
        iterations_per_epoch: an epoch of exactly this many training batches, each domain's loader
            cycled (reshuffled at each pass) as long as it takes: the reference library's
            "iterations per epoch" (1,000 on Office-31), so a run's length and its validation
            interval do not depend on the domains' sizes. null: one pass over the larger domain.

    ``batch_size`` and ``image_size`` are the pair's and are set on both domains, so they are
    written once (``data.batch_size``, ``data.image_size``), as for any other data; where a
    domain's own value differs, one log line says so.
    """

    def __init__(
        self,
        source: ClassificationDataModule,
        target: ClassificationDataModule,
        batch_size: int = 128,
        image_size: int = 32,
        target_labelled_per_class: int = 0,
        report_target_test: bool = True,
        iterations_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        if iterations_per_epoch is not None and iterations_per_epoch < 1:
            raise ConfigError(
                f"data.iterations_per_epoch={iterations_per_epoch} must be a positive integer "
                f"(null: an epoch is one pass over the larger domain)"
            )
        self.iterations_per_epoch = iterations_per_epoch
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be a positive integer")
        if target_labelled_per_class < 0:
            raise ConfigError(
                f"data.target_labelled_per_class={target_labelled_per_class} must be >= 0 "
                f"(0: no target labels)"
            )
        self.source = source
        self.target = target
        source.stream_name, target.stream_name = "source", "target"  # two independent random streams
        self.batch_size = batch_size
        self.image_size = image_size
        self.target_labelled_per_class = target_labelled_per_class
        self.report_target_test = report_target_test
        self._labelled_positions: np.ndarray | None = None  # chosen in setup()
        overridden = []
        for name, domain in (("source", source), ("target", target)):
            if domain.eval_batch_size == domain.batch_size:  # not set apart: it follows the batch size
                domain.eval_batch_size = batch_size
            for key, value in (("batch_size", batch_size), ("image_size", image_size)):
                if getattr(domain, key) != value:
                    overridden.append(f"data.{name}.{key}={getattr(domain, key)}")
                    setattr(domain, key, value)
        if overridden:
            log.info(
                "domain pair: data.batch_size=%d and data.image_size=%d hold for both domains (over %s)",
                batch_size,
                image_size,
                ", ".join(overridden),
            )

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    def use_channels_last(self) -> None:
        """Both domains' batches in channels_last layout."""
        self.source.use_channels_last()
        self.target.use_channels_last()

    def evaluation_routes(self, stage: str) -> list[EvalRoute]:
        if stage == "val":
            routes = [EvalRoute("val", "val/", "source"), EvalRoute("val", "val/target_", "target")]
            if self.report_target_test:
                routes.append(EvalRoute("test", "report/target_test_", "target", report=True))
            return routes
        return [EvalRoute("test", "test/", "target"), EvalRoute("test", "test/source_", "source")]

    def prepare_data(self) -> None:
        self.source.prepare_data()
        self.target.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.source.setup(stage)
        try:
            self.target.setup(stage)
        except DataError as err:
            raise DataError(f"target domain: {err}") from None
        if "test" not in self.target.datasets or len(self.target.datasets["test"]) == 0:
            raise DataError(
                f"the target domain {self.target.name} has no test split; domain adaptation is "
                f"measured on the target's labelled test images, so give it one"
            )
        if len(self.target.datasets["val"]) == 0:
            raise DataError(
                "the target domain has no validation images; the validators and the oracle read "
                "them: set data.target.val_fraction > 0 (e.g. 0.1)"
            )
        source, target = self.source.class_names, self.target.class_names
        if source != target:
            only_source = [c for c in source if c not in target]
            only_target = [c for c in target if c not in source]
            detail = (
                f"only in the source: {only_source}; only in the target: {only_target}"
                if only_source or only_target
                else f"same names in another order: {source} vs {target}"
            )
            raise DataError(
                f"domain adaptation needs the same classes in both domains ({detail}); select "
                f"the shared ones with data.source.classes and data.target.classes"
            )
        self._labelled_positions = self._choose_labelled()  # once: a clear error now, a fixed choice

    def _choose_labelled(self) -> np.ndarray | None:
        if not self.target_labelled_per_class:
            return None
        try:
            return take_per_class(
                self.target.datasets["train"].labels.numpy(),
                self.target_labelled_per_class,
                self.target.subset_seed,
                self.target.class_names,
                key="data.target_labelled_per_class",
            )
        except DataError as err:
            raise DataError(f"target domain: {err}") from None

    def target_split(self) -> tuple[LabelledImages | None, LabelledImages]:
        """(the labelled target images or None, the rest), from the target's training split."""
        train = self.target.datasets["train"]
        if self._labelled_positions is None:
            return None, train
        rest = np.setdiff1d(np.arange(len(train)), self._labelled_positions)
        return train.subset(self._labelled_positions), train.subset(rest)

    def _share_trainer(self) -> None:
        self.source.trainer = self.trainer
        self.target.trainer = self.trainer

    def train_dataloader(self) -> CombinedLoader:
        self._share_trainer()
        labelled, unlabelled = self.target_split()  # built here: the labels as they are now
        loaders = {
            "source": self.source.train_dataloader(),
            "target": self.target.make_loader(unlabelled, self.batch_size, train=True, images_only=True),
        }
        if labelled is not None:
            loaders["target_labelled"] = self.target.make_loader(labelled, self.batch_size, train=True)
        if self.iterations_per_epoch is not None:
            loaders = {name: Cycled(loader, self.iterations_per_epoch) for name, loader in loaders.items()}
        return CombinedLoader(loaders, mode="max_size_cycle")

    def input_spec(self) -> dict[str, Any]:
        """The source domain's (``ClassificationDataModule.input_spec``): a net starts there."""
        return self.source.input_spec()

    def clean_sample(self, n: int) -> torch.Tensor:
        """Un-augmented source training images (see ``ClassificationDataModule.clean_sample``)."""
        return self.source.clean_sample(n)

    @contextlib.contextmanager
    def streams_kept(self) -> Iterator[None]:
        """Draws inside leave both domains' random streams where they were."""
        with self.source.streams_kept(), self.target.streams_kept():
            yield

    def state_dict(self) -> dict[str, Any]:
        """Both domains' random streams, for an exact resume."""
        return {"source": self.source.state_dict(), "target": self.target.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.source.load_state_dict(state_dict.get("source", {}))
        self.target.load_state_dict(state_dict.get("target", {}))

    def _route_loaders(self, stage: str) -> list[DataLoader]:
        self._share_trainer()
        domains = {"source": self.source, "target": self.target}
        return [domains[route.domain].eval_loader(route.split) for route in self.evaluation_routes(stage)]

    def val_dataloader(self) -> list[DataLoader]:
        return self._route_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._route_loaders("test")


class Cycled:
    """``length`` batches of ``loader`` per pass, starting it again (a new shuffle) whenever it
    runs out: a fixed number of iterations per epoch whatever the loader's length."""

    def __init__(self, loader: Any, length: int) -> None:
        self.loader, self.length = loader, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Any]:
        produced = 0
        while produced < self.length:
            empty = True
            for batch in self.loader:
                empty = False
                yield batch
                produced += 1
                if produced == self.length:
                    return
            if empty:
                raise DataError("a training loader has no batches; the domain has no training images")
