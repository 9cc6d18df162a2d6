"""What the scores read of a candidate net on the target's images: its features and its
predictions over its own (source) classes, in one pass."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from transferlab.transferability.base import PREDICTIONS, TransferabilityScore


@torch.no_grad()
def extract(
    net: nn.Module,
    dataset: Dataset,
    batch_size: int = 256,
    device: torch.device | None = None,
    desc: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), softmax predictions (N, C_s)) of ``net`` (a ``Classifier``: ``features``
    and ``head``) on every image of ``dataset``, in order, in eval mode, with a progress bar."""
    from tqdm import tqdm

    device = device or torch.device("cpu")
    was_training = net.training
    net.eval().to(device)
    features, probabilities = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for images, *_ in tqdm(loader, desc=desc or "features", unit="batch", leave=False, disable=not desc):
        f = net.features(images.to(device))
        features.append(f.float().cpu())
        probabilities.append(net.head(f).float().softmax(1).cpu())
    net.train(was_training)
    return torch.cat(features).numpy(), torch.cat(probabilities).numpy()


def score_all(
    features: np.ndarray,
    probabilities: np.ndarray | None,
    labels: np.ndarray,
    scores: dict[str, TransferabilityScore],
) -> dict[str, float]:
    """Every score of ``scores`` on one candidate's outputs; a score that reads predictions is
    left out when there are none (a net without its source head)."""
    values = {}
    for name, score in scores.items():
        x = probabilities if score.reads == PREDICTIONS else features
        if x is not None:
            values[name] = score(x, labels)
    return values
