"""The feature space of two domains: the proxy A-distance and a t-SNE picture.

The proxy A-distance (Ben-David et al., 2007; Ganin et al., JMLR 2016, Sec. 5.1.4) is
``d_A = 2 (1 − 2ε)``, ε the held-out error of a classifier trained to tell the source's features
from the target's: 2 when a linear classifier separates them, 0 when it does no better than chance
(ε = 1/2; below 0 when it does worse, by chance on a small sample). As in the reference library
(thuml/Transfer-Learning-Library, ``tllib/utils/analysis/a_distance.py``) the classifier is linear
(logistic), trained on 80% of the features of both domains, ε its error on the other 20%.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F


def a_distance(
    source: np.ndarray, target: np.ndarray, seed: int = 0, epochs: int = 100, train_share: float = 0.8
) -> float:
    """d_A = 2(1 − 2ε) of ``source`` (N_s, D) and ``target`` (N_t, D) features: ε the error, on a
    held-out ``1 − train_share`` of the images of each domain, of a logistic regression trained
    (L-BFGS, ``epochs`` iterations, standardised features) on the rest."""
    x = torch.from_numpy(np.concatenate([source, target])).double()
    y = torch.cat([torch.ones(len(source)), torch.zeros(len(target))]).double()
    generator = torch.Generator().manual_seed(seed)
    train = torch.zeros(len(x), dtype=torch.bool)
    for domain in (y == 1, y == 0):  # the same share of each domain in both parts
        index = domain.nonzero().squeeze(1)
        index = index[torch.randperm(len(index), generator=generator)]
        train[index[: round(train_share * len(index))]] = True
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-8)
    x = (x - mean) / std
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=epochs, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = x[train] @ weight + bias
        loss = F.binary_cross_entropy_with_logits(logits, y[train]) + 1e-4 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (x[~train] @ weight + bias) > 0
        error = (predicted.double() != y[~train]).double().mean().item()
    return 2.0 * (1.0 - 2.0 * error)


def tsne_figure(
    source: np.ndarray,
    target: np.ndarray,
    source_labels: np.ndarray,
    target_labels: np.ndarray,
    path: Path,
    title: str = "",
    class_names: Sequence[str] | None = None,
    seed: int = 0,
) -> Path:
    """A t-SNE embedding (scikit-learn, 2-d, ``seed``) of both domains' features side by side,
    coloured by domain (source red, target blue, as the reference library draws it) and by class
    (the source as dots, the target as crosses); saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    features = np.concatenate([source, target]).astype(np.float32)
    perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features
    )
    src, tgt = points[: len(source)], points[len(source) :]
    figure, (by_domain, by_class) = plt.subplots(1, 2, figsize=(12, 6))
    by_domain.scatter(src[:, 0], src[:, 1], s=6, c="tab:red", label="source", alpha=0.7)
    by_domain.scatter(tgt[:, 0], tgt[:, 1], s=6, c="tab:blue", label="target", alpha=0.7)
    by_domain.legend(loc="best", markerscale=3)
    by_domain.set_title("by domain")
    classes = int(max(source_labels.max(initial=0), target_labels.max(initial=0))) + 1
    cmap = plt.get_cmap("tab10" if classes <= 10 else "tab20" if classes <= 20 else "nipy_spectral")
    colour = lambda labels: cmap(labels / max(classes - 1, 1)) if classes > 20 else cmap(labels)  # noqa: E731
    by_class.scatter(src[:, 0], src[:, 1], s=6, c=colour(source_labels), marker="o", alpha=0.7)
    by_class.scatter(tgt[:, 0], tgt[:, 1], s=14, c=colour(target_labels), marker="x", alpha=0.7)
    if class_names is not None and classes <= 20:
        for label, name in enumerate(class_names):
            by_class.scatter([], [], c=[cmap(label)], s=20, label=name)
        by_class.legend(loc="best", fontsize=7, ncol=2)
    by_class.set_title("by class (source ●, target ×)")
    for axes in (by_domain, by_class):
        axes.set_xticks([])
        axes.set_yticks([])
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
