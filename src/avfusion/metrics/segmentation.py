"""Audio-visual segmentation: the `avsbench`, `official` and `semantic` protocols (docs/protocols.md).

Binary protocols take foreground probabilities in [0, 1] (apply sigmoid to logits first) and
binary ground truth; `semantic` takes per-class scores (logits or probabilities: only the argmax
is used) and integer labels. Per-item functions return what a summary needs, so items can be
gathered across ranks (see `accumulate`) before summarising.

Constants follow each reference implementation: `avsbench` IoU adds 1e-7 to the union and uses
1e-20 in precision/recall; `official` uses 1e-10 everywhere; `semantic` adds 2.22e-16 to the union
and leaves F undefined (-> 0) where precision or recall is 0/0. Thresholds for F curves are
float64 ``linspace(0, 1 - 1e-10, n)``; a pixel is positive at threshold t when prob >= t.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from avfusion.errors import DataError

from ._common import Skipped, binary_mask, probabilities, split_skipped, to_numpy

logger = logging.getLogger(__name__)

BETA2 = 0.3


def foreground_iou(pred_mask: Any, gt_mask: Any) -> float:
    """|P & G| / |P | G| for binary masks; 1.0 when both are empty (perfect agreement)."""
    p, g = binary_mask(pred_mask, "pred_mask"), binary_mask(gt_mask, "gt_mask")
    _same_shape(p, g)
    union = np.sum(p | g)
    return 1.0 if union == 0 else float(np.sum(p & g) / union)


def f_measure(pred: Any, gt: Any, beta2: float = BETA2) -> float:
    """F_beta of binary masks, (1+b2) P R / (b2 P + R); an empty prediction has P = 0.

    Returns 0.0 when P = R = 0 and 1.0 when both masks are empty.
    """
    p, g = binary_mask(pred, "pred"), binary_mask(gt, "gt")
    _same_shape(p, g)
    if not p.any() and not g.any():
        return 1.0
    tp = np.sum(p & g)
    precision = tp / p.sum() if p.any() else 0.0
    recall = tp / g.sum() if g.any() else 0.0
    if precision + recall == 0:
        return 0.0
    return float((1 + beta2) * precision * recall / (beta2 * precision + recall))


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise DataError(f"prediction {a.shape} and ground truth {b.shape} must have the same shape")


def _pr_curve(prob: np.ndarray, gt: np.ndarray, thresholds: np.ndarray):
    """(tp, #predicted, #gt) at each threshold, prediction = prob >= t."""
    order = np.argsort(prob, axis=None, kind="stable")
    p_sorted = prob.ravel()[order]
    suffix_tp = np.r_[np.cumsum(gt.ravel()[order][::-1])[::-1], 0]  # gt pixels at index >= i
    first = np.searchsorted(p_sorted, thresholds, side="left")  # first index with p >= t
    return suffix_tp[first].astype(np.float64), (p_sorted.size - first).astype(np.float64), gt.sum()


# --- avsbench: the benchmark's own code (S4 / MS3) ------------------------------------------

def avsbench_video(probs: Any, gt: Any, num_thresholds: int = 255) -> dict:
    """One video (frames, H, W) -> {miou, F, frames, frames_empty_gt}.

    IoU per frame of (prob > 0.5) vs gt; an empty-gt frame scores #true negatives / #pixels;
    miou = mean over frames. F: precision/recall curve per non-empty-gt frame, averaged over those
    frames, max over thresholds; a video whose frames all have empty gt scores F = 0 (as the
    benchmark code does).
    """
    p = probabilities(probs, "probs", ndim=3)
    g = binary_mask(gt, "gt", ndim=3)
    _same_shape(p, g)
    npix = p.shape[1] * p.shape[2]
    thresholds = np.linspace(0.0, 1.0 - 1e-10, num_thresholds)
    ious, curves = [], []
    for prob, gt_f in zip(p, g):
        pred = prob > 0.5
        if not gt_f.any():
            ious.append(np.sum(~pred) / (npix + 1e-7))
            continue
        ious.append(np.sum(pred & gt_f) / (np.sum(pred | gt_f) + 1e-7))
        tp, npred, ngt = _pr_curve(prob, gt_f, thresholds)
        precision, recall = tp / (npred + 1e-20), tp / (ngt + 1e-20)
        with np.errstate(invalid="ignore"):
            f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall)
        curves.append(np.nan_to_num(f, nan=0.0))
    f_video = float(np.mean(curves, axis=0).max()) if curves else 0.0
    return {"miou": float(np.mean(ious)), "F": f_video, "frames": len(p),
            "frames_empty_gt": len(p) - len(curves)}


def summarize_avsbench(results: Sequence[dict | Skipped]) -> dict:
    """Per-video results -> {protocol, N (videos), frames, skipped, miou, F, videos_without_foreground}."""
    scored, skipped = split_skipped(results)
    nan = float("nan")
    return {"protocol": "avsbench", "N": len(scored), "skipped": skipped,
            "frames": int(sum(r["frames"] for r in scored)),
            "miou": float(np.mean([r["miou"] for r in scored])) if scored else nan,
            "F": float(np.mean([r["F"] for r in scored])) if scored else nan,
            "videos_without_foreground": sum(r["frames_empty_gt"] == r["frames"] for r in scored)}


# --- official: DeepAVFusion's evaluator ------------------------------------------------------

def official_frame(prob: Any, gt: Any, num_thresholds: int = 256) -> dict | Skipped:
    """One frame (H, W) -> {iou_bg, iou_fg, F}, or Skipped if its gt is all background.

    Class IoUs of (prob > 0.5) are inter / (union + 1e-10), None where the class is absent from
    both prediction and gt (not counted); F = max over thresholds of
    1.3 P R / (0.3 P + R + 1e-10) with P = tp / (#pred + 1e-10), R = tp / (#gt + 1e-10).
    """
    p = probabilities(prob, "prob", ndim=2)
    g = binary_mask(gt, "gt", ndim=2)
    _same_shape(p, g)
    if not g.any():
        return Skipped("all-background ground truth")
    pred, eps = p > 0.5, 1e-10
    out: dict = {}
    for name, pc, gc in (("iou_bg", ~pred, ~g), ("iou_fg", pred, g)):
        union = np.sum(pc | gc)
        out[name] = float(np.sum(pc & gc) / (union + eps)) if union else None
    tp, npred, ngt = _pr_curve(p, g, np.linspace(0.0, 1.0 - eps, num_thresholds))
    precision, recall = tp / (npred + eps), tp / (ngt + eps)
    f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall + eps)
    out["F"] = float(f.max())
    return out


def summarize_official(results: Sequence[dict | Skipped]) -> dict:
    """Per-frame results -> {protocol, N, skipped, miou, miou_fg, iou_bg, F}.

    Class IoU = sum over frames where the class occurs (in prediction or gt) / that count;
    miou = mean of the background and foreground IoUs (inflated by the background), miou_fg =
    foreground only (comparable to AVSBench papers); F = mean over frames of the per-frame max.
    """
    scored, skipped = split_skipped(results)
    nan = float("nan")

    def class_mean(key: str) -> float:
        vals = [r[key] for r in scored if r[key] is not None]
        return float(np.mean(vals)) if vals else nan

    bg, fg = class_mean("iou_bg"), class_mean("iou_fg")
    return {"protocol": "official", "N": len(scored), "skipped": skipped,
            "miou": float(np.nanmean([bg, fg])) if scored else nan, "miou_fg": fg, "iou_bg": bg,
            "F": float(np.mean([r["F"] for r in scored])) if scored else nan}


# --- semantic: AVSS -------------------------------------------------------------------------

def semantic_frame(scores: Any, labels: Any) -> dict:
    """One frame: scores (classes, H, W), labels (H, W) ints in [0, classes) ->
    {iou, F, present}: per-class arrays, `present` where the class occurs in prediction or gt.

    IoU = inter / (union + 2.22e-16); F = 1.3 P R / (0.3 P + R) with P = inter / #pred,
    R = inter / #gt, and 0 where undefined.
    """
    s = to_numpy(scores, "scores", ndim=3)
    y = to_numpy(labels, "labels", ndim=2, dtype=np.int64)
    c = s.shape[0]
    if s.shape[1:] != y.shape:
        raise DataError(f"scores {s.shape} and labels {y.shape}: spatial sizes differ")
    if y.min() < 0 or y.max() >= c:
        raise DataError(f"labels must lie in [0, {c}), got [{y.min()}, {y.max()}]")
    pred = np.argmax(s, axis=0)
    inter = np.bincount(pred[pred == y], minlength=c).astype(np.float64)
    area_pred = np.bincount(pred.ravel(), minlength=c).astype(np.float64)
    area_gt = np.bincount(y.ravel(), minlength=c).astype(np.float64)
    union = area_pred + area_gt - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = inter / area_pred, inter / area_gt
        f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall)
    return {"iou": inter / (2.220446049250313e-16 + union), "F": np.nan_to_num(f, nan=0.0),
            "present": union > 0}


def summarize_semantic(results: Sequence[dict | Skipped], unseen: str = "skip",
                       background: int | None = 0) -> dict:
    """Per-frame results -> {protocol, N, skipped, miou, F, miou_fg, F_fg, per-class lists, ...}.

    Per class: sum over frames where it is present / number of such frames. `unseen` classes
    (never present) are left out of the means (`skip`) or count as 0 (`zero`, what AVSBench's AVSS
    test script does). `*_fg` exclude the `background` class index.
    """
    if unseen not in ("skip", "zero"):
        raise ValueError(f"unseen must be 'skip' or 'zero', got {unseen!r}")
    scored, skipped = split_skipped(results)
    if not scored:
        raise DataError("semantic segmentation summary: no scored frames")
    count = np.sum([r["present"] for r in scored], axis=0).astype(np.float64)
    seen = count > 0
    with np.errstate(invalid="ignore"):
        iou_pc = np.sum([r["iou"] for r in scored], axis=0) / count
        f_pc = np.sum([r["F"] for r in scored], axis=0) / count
    keep = seen if unseen == "skip" else np.ones_like(seen)
    fg = keep.copy()
    if background is not None:
        fg[background] = False

    def mean(x: np.ndarray, mask: np.ndarray) -> float:
        return float(np.where(seen, x, 0.0)[mask].mean()) if mask.any() else float("nan")

    return {"protocol": f"semantic/unseen={unseen}", "N": len(scored), "skipped": skipped,
            "miou": mean(iou_pc, keep), "F": mean(f_pc, keep),
            "miou_fg": mean(iou_pc, fg), "F_fg": mean(f_pc, fg),
            "classes_seen": int(seen.sum()), "classes_unseen": int((~seen).sum()),
            "miou_per_class": np.where(seen, iou_pc, np.nan).tolist(),
            "F_per_class": np.where(seen, f_pc, np.nan).tolist()}
