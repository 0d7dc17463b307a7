"""k-NN retrieval accuracy on a held-out labelled set (the pretraining monitor, docs/protocols.md).

Protocol ``knn-loo``: features are L2-normalised; every item queries all OTHER items of the set by
cosine similarity (leave-one-out by identity, not by rank; ties in similarity go to the lower item
index). Single-label: the prediction is the majority class of the k neighbours (a tie in votes goes
to the class with the larger summed similarity, then to the lower class index); accuracy is the
fraction of items predicted right. Multi-label (multi-hot labels): class scores are the summed
similarity of the neighbours carrying the class, divided by k; the number is mAP over the classes
present (``seen``). The official monitor is the k = 1 case (it takes the second-best match, which
is the query itself only when no duplicate feature exists).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from avfusion.errors import DataError

from ._common import to_numpy

__all__ = ["l2_normalize", "knn_neighbours", "knn_predict", "knn_accuracy", "summarize"]

PROTOCOL = "knn-loo"


def l2_normalize(features: Any, eps: float = 1e-12) -> np.ndarray:
    """(N, D) -> rows of unit length (a zero row stays zero)."""
    x = to_numpy(features, "features", ndim=2)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def knn_neighbours(features: Any, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, k) and cosine similarities (N, k) of each item's k nearest OTHER items, best first."""
    x = l2_normalize(features)
    n = len(x)
    if not 1 <= k <= n - 1:
        raise DataError(f"k = {k} needs at least {k + 1} items, got {n}")
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float64)
    for lo in range(0, n, chunk):
        s = x[lo:lo + chunk] @ x.T  # (q, N)
        rows = np.arange(len(s))
        s[rows, lo + rows] = -np.inf  # leave the query out
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]  # stable: equal similarity -> lower index
        idx[lo:lo + chunk] = order
        sim[lo:lo + chunk] = np.take_along_axis(s, order, axis=1)
    return idx, sim


def _vote(labels: np.ndarray, idx: np.ndarray, sim: np.ndarray, num_classes: int) -> np.ndarray:
    """Majority class per row; ties -> larger summed similarity -> lower class index."""
    n = len(idx)
    votes = np.zeros((n, num_classes))
    weight = np.zeros((n, num_classes))
    rows = np.repeat(np.arange(n), idx.shape[1])
    np.add.at(votes, (rows, labels[idx].ravel()), 1.0)
    np.add.at(weight, (rows, labels[idx].ravel()), sim.ravel())
    best = votes == votes.max(axis=1, keepdims=True)
    weight = np.where(best, weight, -np.inf)
    return np.argmax(weight, axis=1)  # argmax returns the first (lowest) index among equals


def knn_predict(features: Any, labels: Any, k: int, num_classes: int | None = None) -> np.ndarray:
    """Leave-one-out predictions: class ids (N,) for single labels, class scores (N, C) for multi-hot."""
    y = to_numpy(labels, "labels", ndim=(1, 2), dtype=np.int64)
    if len(y) != len(to_numpy(features, "features", ndim=2)):
        raise DataError("features and labels must have the same number of items")
    idx, sim = knn_neighbours(features, k)
    if y.ndim == 2:  # multi-hot: similarity-weighted label vectors of the neighbours
        return np.einsum("nk,nkc->nc", sim, y[idx].astype(np.float64)) / k
    if y.min() < 0:
        raise DataError("labels must be non-negative class indices")
    return _vote(y, idx, sim, num_classes or int(y.max()) + 1)


def knn_accuracy(features: Any, labels: Any, k: int) -> float:
    """Fraction of items whose k-NN majority class is their own label (single-label)."""
    y = to_numpy(labels, "labels", ndim=1, dtype=np.int64)
    return float(np.mean(knn_predict(features, y, k) == y))


def summarize(features: dict[str, Any], labels: Any, ks: Sequence[int] = (1, 20)) -> dict[str, Any]:
    """Accuracy (single-label) or mAP (multi-hot) per feature kind and k.

    Returns ``{"protocol", "N", "skipped", "metric", "<kind>": {k: value}}`` with metric "top1" or "mAP".
    """
    from .classification import mean_average_precision

    y = to_numpy(labels, "labels", ndim=(1, 2), dtype=np.int64)
    out: dict[str, Any] = {"protocol": PROTOCOL, "N": int(len(y)), "skipped": {},
                           "metric": "mAP" if y.ndim == 2 else "top1"}
    for kind, feats in features.items():
        out[kind] = {}
        for k in ks:
            if y.ndim == 2:
                out[kind][k] = mean_average_precision(knn_predict(feats, y, k), y, "seen").value
            else:
                out[kind][k] = knn_accuracy(feats, y, k)
    return out
