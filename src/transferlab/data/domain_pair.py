"""A labelled source domain and an unlabelled target domain with the same classes."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from transferlab.data.base import ClassificationDataModule
from transferlab.utils.errors import DataError


class ImagesOnly(Dataset):
    """The images of a labelled dataset, without their labels: what training sees of the target."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i][0]


class DomainPairDataModule(L.LightningDataModule):
    """Training batches ``{"source": (images, labels), "target": images}``; the target's labels
    never reach training. Validation: the source's validation split (model selection) and the
    target's test split (reported as ``val/target_acc``). Test: the target's test split
    (``test/acc``) and the source's (``test/source_acc``).

    ``batch_size`` and ``image_size`` mirror the domains' own settings, so the rest of the
    template (the global batch-size check, the net's input size) reads them as for any data.
    """

    def __init__(
        self,
        source: ClassificationDataModule,
        target: ClassificationDataModule,
        batch_size: int = 128,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        self.source = source
        self.target = target
        self.batch_size = batch_size
        self.image_size = image_size

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

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

    def _share_trainer(self) -> None:
        self.source.trainer = self.trainer
        self.target.trainer = self.trainer

    def train_dataloader(self) -> CombinedLoader:
        self._share_trainer()
        target_images = ImagesOnly(self.target.datasets["train"])
        loaders = {
            "source": self.source.train_dataloader(),
            "target": self.target.make_loader(target_images, self.target.batch_size, train=True),
        }
        return CombinedLoader(loaders, mode="max_size_cycle")

    def val_dataloader(self) -> list[DataLoader]:
        self._share_trainer()
        return [self.source.val_dataloader(), self.target.test_dataloader()]

    def test_dataloader(self) -> list[DataLoader]:
        self._share_trainer()
        return [self.target.test_dataloader(), self.source.test_dataloader()]
