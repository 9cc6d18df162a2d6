"""The test split's per-class accuracy and confusion matrix, as files, figures and TensorBoard images."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class, C[i, i] / Σ_j C[i, j], from a (K, K) confusion matrix whose rows are
    the true classes; NaN for a class with no examples."""
    confusion = confusion.double()
    return confusion.diagonal() / confusion.sum(dim=1)


def write_confusion_matrix(
    confusion: torch.Tensor, names: list[str], out_dir: str | Path, run: str = ""
) -> Any:
    """Write ``confusion_matrix.csv`` (counts, rows = true class) and ``confusion_matrix.png``
    (colour = the row's rate, each cell's count written in it up to 20 classes, ``run`` — which
    run this is — in the title) into ``out_dir``; return the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = confusion.long().tolist()
    with open(out_dir / "confusion_matrix.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *names])
        writer.writerows([name, *row] for name, row in zip(names, counts, strict=True))

    rates = confusion.double() / confusion.sum(dim=1, keepdim=True).clamp_min(1)
    size = min(3 + 0.35 * len(names), 16)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046)
    if len(names) <= 20:
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set_yticks(range(len(names)), names)
        for i, row in enumerate(counts):
            for j, count in enumerate(row):
                if count:
                    dark = rates[i, j].item() > 0.5
                    ax.text(
                        j,
                        i,
                        str(count),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    summary = f"test accuracy per class: mean {per_class_accuracy(confusion).nanmean():.3f}"
    ax.set_title("\n".join([*textwrap.wrap(run, 8 * len(names) + 40), summary]), fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "confusion_matrix.png", dpi=100)
    plt.close(fig)
    return fig


class ConfusionReport(Callback):
    """At the end of a test: the per-class accuracy (``test/class_acc/<name>`` in the loggers, the
    module's ``class_accuracy`` for ``metrics.json``) and the confusion matrix (a PNG and a CSV in
    the run directory, an image in TensorBoard), from the counts the module kept
    (``test_confusion``, synced over devices)."""

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        matrix = pl_module.test_confusion.compute()
        if int(matrix.sum()) == 0:
            return
        names = [str(n) for n in pl_module.contract.class_names or range(len(matrix))]
        accuracy = per_class_accuracy(matrix).tolist()
        # not self.log: a hundred classes would flood the results table; metrics.json has them
        pl_module.class_accuracy = {n: a for n, a in zip(names, accuracy, strict=True) if a == a}
        if not trainer.is_global_zero:
            return
        figure = write_confusion_matrix(
            matrix.cpu(), names, trainer.default_root_dir, pl_module.contract.label
        )
        for logger in trainer.loggers:
            logger.log_metrics(
                {f"test/class_acc/{n}": a for n, a in pl_module.class_accuracy.items()},
                step=trainer.global_step,
            )
            if hasattr(logger.experiment, "add_figure"):
                logger.experiment.add_figure("test/confusion_matrix", figure, trainer.global_step)
