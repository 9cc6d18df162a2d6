"""Which images a split holds: class subsets, the validation carve-out, N images per class.

Pure index arithmetic on label arrays, so it is cheap to test and identical for every dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transferlab.utils.errors import DataError


def class_mapping(available: Sequence[str], wanted: Sequence[str] | None) -> list[int]:
    """Indices (into ``available``) of the wanted classes, in the wanted order.

    ``wanted=None`` keeps every class in its original order.
    """
    if wanted is None:
        return list(range(len(available)))
    wanted = [str(name) for name in wanted]  # data.classes=[0,1] on a command line: the names "0", "1"
    if not wanted:
        raise DataError("data.classes is empty; list at least one class name or set it to null")
    duplicates = sorted({name for name in wanted if wanted.count(name) > 1})
    if duplicates:
        raise DataError(f"data.classes names {duplicates} more than once; list each class once")
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise DataError(
            f"unknown class name(s) {unknown} in data.classes; valid names: {', '.join(available)}"
        )
    return [list(available).index(name) for name in wanted]


def select_classes(targets: np.ndarray, class_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the images whose label is in ``class_ids`` and their new labels 0..k-1."""
    remap = np.full(max(int(targets.max(initial=0)), *class_ids) + 1, -1, dtype=np.int64)
    remap[list(class_ids)] = np.arange(len(class_ids))
    new_labels = remap[targets]
    keep = np.flatnonzero(new_labels >= 0)
    return keep, new_labels[keep]


def split_per_class(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of positions 0..len(labels)-1 into (kept, carved); ``fraction`` goes to carved.

    Each class gives fraction * n_c images, rounded half up (at least one when fraction > 0), chosen by a
    generator seeded with ``seed`` alone, so the carve-out is the same for every run.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"data.val_fraction={fraction} must be in [0, 1)")
    rng = np.random.default_rng(seed)
    kept, carved = [], []
    for label in np.unique(labels):
        positions = rng.permutation(np.flatnonzero(labels == label))
        n_carved = max(1, int(fraction * len(positions) + 0.5)) if fraction > 0 else 0
        if n_carved >= len(positions):
            raise DataError(
                f"class {label} has {len(positions)} training image(s), too few to carve a "
                f"validation split with data.val_fraction={fraction}; lower it"
            )
        carved.append(positions[:n_carved])
        kept.append(positions[n_carved:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(carved))


def take_per_class(
    labels: np.ndarray,
    per_class: int | None,
    seed: int,
    class_names: Sequence[str],
    key: str = "data.train_per_class",
) -> np.ndarray:
    """Positions of ``per_class`` images of each class, chosen by a generator seeded with ``seed``.

    The choice is a prefix of a seeded permutation, so a smaller N gives a subset of a larger N.
    ``key`` is the config key that set ``per_class``, for the messages.
    """
    if per_class is None:
        return np.arange(len(labels))
    if per_class < 1:
        raise DataError(f"{key}={per_class} must be a positive integer or null")
    rng = np.random.default_rng(seed)
    chosen = []
    for label, name in enumerate(class_names):
        positions = np.flatnonzero(labels == label)
        if per_class > len(positions):
            raise DataError(
                f"{key}={per_class} but class '{name}' has only {len(positions)} "
                f"training images (after the validation carve-out); lower it or set it to null"
            )
        chosen.append(rng.permutation(positions)[:per_class])
    return np.sort(np.concatenate(chosen))


def spread_positions(length: int, n: int) -> np.ndarray:
    """Up to ``n`` positions of ``0..length-1`` spread evenly over the range (image folders are
    stored class by class, so an even spread takes every class)."""
    return np.unique(np.linspace(0, length - 1, min(n, length)).round().astype(int))
