"""mmaction2's AccMetric, exactly (spec test-protocol.md §9): pure numpy functions."""

from __future__ import annotations

import numpy as np


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, topk: tuple[int, ...]) -> list[float]:
    """Fraction of rows whose label is among the k highest scores, for each k.

    Ties follow numpy's default argsort (as mmaction2 does), not argmax's first-index rule.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1, 1)
    order = np.argsort(scores, axis=1)
    out = []
    for k in topk:
        top = order[:, -k:][:, ::-1]
        out.append(float((top == labels).any(axis=1).mean()) if len(labels) else 0.0)
    return out


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the union of predicted and true classes of per-class recall.

    A class that only ever appears as a prediction counts with accuracy 0 (mmaction2's rule).
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    pred = np.argmax(np.asarray(scores), axis=1)
    classes = np.unique(np.concatenate([pred, labels]))
    accs = []
    for c in classes:
        is_c = labels == c
        accs.append(float((pred[is_c] == c).mean()) if is_c.any() else 0.0)
    return float(np.mean(accs))


def accuracy_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    topk: tuple[int, ...] = (1, 5),
    metrics: tuple[str, ...] = ("top_k_accuracy", "mean_class_accuracy"),
) -> dict[str, float]:
    """`{'acc/top1': ..., 'acc/top5': ..., 'acc/mean1': ...}` as fractions in [0, 1]."""
    out: dict[str, float] = {}
    for name in metrics:
        if name == "top_k_accuracy":
            for k, acc in zip(topk, top_k_accuracy(scores, labels, topk)):
                out[f"acc/top{k}"] = acc
        elif name == "mean_class_accuracy":
            out["acc/mean1"] = mean_class_accuracy(scores, labels)
        else:
            raise ValueError(f"unknown metric {name!r}: use top_k_accuracy, mean_class_accuracy")
    return out
