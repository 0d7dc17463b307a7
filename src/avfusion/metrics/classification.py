"""Classification: top-1, per-class average precision, mAP, ROC-AUC, d' (docs/protocols.md).

Average precision is sklearn's (step-wise, not interpolated): with the distinct scores of a class
as thresholds in decreasing order, AP = sum_k (R_k - R_{k-1}) * P_k, R_0 = 0; tied scores enter
together. ROC-AUC counts a tied positive/negative pair as one half (the trapezoidal ROC area).
"""
from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

from avfusion.errors import DataError

from ._common import to_numpy

logger = logging.getLogger(__name__)


class ClassMean(NamedTuple):
    """A mean over classes and how many classes it left out (no positives / undefined)."""

    value: float
    classes_skipped: int


def _scores_targets(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    s = to_numpy(scores, "scores", ndim=2)
    y = to_numpy(targets, "targets", ndim=2)
    if s.shape != y.shape:
        raise DataError(f"scores {s.shape} and targets {y.shape} must both be (items, classes)")
    if not np.all((y == 0) | (y == 1)):
        raise DataError("targets: expected a multi-hot 0/1 matrix")
    return s, y.astype(bool)


def top1(logits: Any, labels: Any) -> float:
    """Fraction of items whose argmax over classes equals the label (ties: lowest index)."""
    s = to_numpy(logits, "logits", ndim=2)
    y = to_numpy(labels, "labels", ndim=1, dtype=np.int64)
    if len(s) != len(y) or len(y) == 0:
        raise DataError(f"logits {s.shape} and labels {y.shape}: need the same, non-zero length")
    if y.min() < 0 or y.max() >= s.shape[1]:
        raise DataError(f"labels must lie in [0, {s.shape[1]}), got [{y.min()}, {y.max()}]")
    return float(np.mean(np.argmax(s, axis=1) == y))


def _ap_one(s: np.ndarray, y: np.ndarray) -> float:
    npos = int(y.sum())
    if npos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0, tp]) / npos
    return float(np.sum(recall_step * precision))


def average_precision(scores: Any, targets: Any) -> np.ndarray:
    """Per-class AP, shape (classes,); NaN for a class without positives."""
    s, y = _scores_targets(scores, targets)
    return np.array([_ap_one(s[:, c], y[:, c]) for c in range(s.shape[1])])


def mean_average_precision(scores: Any, targets: Any, variant: str = "seen") -> ClassMean:
    """mAP over classes with at least one positive, with the count of classes without any.

    `seen` (official: classes absent from the eval set are dropped before averaging) and
    `nanmean` (absent classes are NaN and excluded) give the same value; they are distinct protocol
    names so reports say which convention was asked for.
    """
    if variant not in ("seen", "nanmean"):
        raise ValueError(f"variant must be 'seen' or 'nanmean', got {variant!r}")
    ap = average_precision(scores, targets)
    missing = int(np.isnan(ap).sum())
    if missing == len(ap):
        raise DataError("targets: no class has a positive; mAP is undefined")
    return ClassMean(float(np.nanmean(ap)), missing)


def roc_auc(scores: Any, targets: Any) -> ClassMean:
    """Mean per-class ROC-AUC over classes with both positives and negatives (others counted)."""
    s, y = _scores_targets(scores, targets)
    aucs = []
    for c in range(s.shape[1]):
        npos = int(y[:, c].sum())
        nneg = len(y) - npos
        if npos == 0 or nneg == 0:
            continue
        ranks = rankdata(s[:, c])  # average ranks for ties -> ties count one half
        aucs.append((ranks[y[:, c]].sum() - npos * (npos + 1) / 2) / (npos * nneg))
    if not aucs:
        raise DataError("targets: no class has both positives and negatives; AUC is undefined")
    return ClassMean(float(np.mean(aucs)), s.shape[1] - len(aucs))


def d_prime(auc: float | np.ndarray) -> float | np.ndarray:
    """d' = sqrt(2) * Phi^-1(AUC), Phi the standard normal CDF."""
    out = np.sqrt(2.0) * ndtri(np.asarray(auc, dtype=np.float64))
    return float(out) if np.ndim(out) == 0 else out


def summarize_single_label(logits: Any, labels: Any, protocol: str = "top1") -> dict:
    """{protocol, N, skipped, top1} for single-label classification."""
    return {"protocol": protocol, "N": int(len(to_numpy(labels, "labels", dtype=np.int64))),
            "skipped": {}, "top1": top1(logits, labels)}


def summarize_multi_label(scores: Any, targets: Any, variant: str = "seen") -> dict:
    """{protocol, N, skipped, mAP, mAUC, d_prime, classes_without_positives, classes_without_auc}."""
    m = mean_average_precision(scores, targets, variant)
    a = roc_auc(scores, targets)
    if m.classes_skipped:
        logger.info("mAP (%s): %d classes without positives excluded", variant, m.classes_skipped)
    return {"protocol": f"mAP/{variant}", "N": int(np.shape(to_numpy(targets, "targets"))[0]),
            "skipped": {}, "mAP": m.value, "mAUC": a.value, "d_prime": d_prime(a.value),
            "classes_without_positives": m.classes_skipped, "classes_without_auc": a.classes_skipped}
