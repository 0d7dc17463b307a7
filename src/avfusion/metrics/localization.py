"""Visual sound localisation: cIoU, AP50, AUC (the LVS / EZ-VSL protocol, docs/protocols.md).

Conventions (those of the EZ-VSL evaluation code, which Flickr-SoundNet and VGG-SS numbers follow):

* Heatmaps of any resolution are resized to the ground-truth size with bilinear interpolation,
  ``align_corners=True``.
* Min-max normalisation maps a heatmap to [0, 1]. A constant heatmap (max == min) normalises to all
  ones, so it binarises to the whole image under every rule (the ``full`` baseline, docs/avdigits.md).
* ``median``: threshold = the element at index ``n // 2`` of the sorted values (the upper median);
  a pixel is 1 where heatmap >= threshold. With distinct values that is exactly the top half of the
  pixels; ties at the threshold are all included (a constant heatmap marks everything).
* ``fixed@t``: a pixel is 1 where the normalised heatmap > t (strict).
* Boxes are rasterised with pixel index ``x`` inside box ``(x0, y0, x1, y1)`` iff ``x0 <= x < x1``
  and ``y0 <= y < y1`` (numpy slices ``[y0:y1, x0:x1]``); coordinates are converted to integer pixels
  by flooring, then clipped to the image.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from avfusion.errors import DataError

from ._common import Skipped, split_skipped, to_numpy

logger = logging.getLogger(__name__)

EVAL_SIZE = 224
# Success-rate thresholds of the AUC, computed as 0.05 * i like the reference code (so that e.g.
# 0.15000000000000002 is the third threshold, not 0.15).
AUC_THRESHOLDS = np.array([0.05 * i for i in range(21)])


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise DataError(f"size must be positive, got {size}")
    return h, w


def resize_bilinear(heatmap: Any, size: int | Sequence[int]) -> np.ndarray:
    """2-D heatmap -> float64 (H, W) by bilinear interpolation, align_corners=True."""
    h, w = _size2(size)
    arr = to_numpy(heatmap, "heatmap", ndim=2)
    if arr.shape == (h, w):
        return arr
    t = torch.from_numpy(arr)[None, None]  # (1, 1, h0, w0)
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=True)[0, 0].numpy()


def minmax_normalize(heatmap: np.ndarray) -> np.ndarray:
    """Map to [0, 1]; a constant map becomes all ones (binarises to the whole image)."""
    lo, hi = float(heatmap.min()), float(heatmap.max())
    if hi == lo:
        return np.ones_like(heatmap, dtype=np.float64)
    return (heatmap - lo) / (hi - lo)


def binarize_map(heatmap: np.ndarray, binarize: str = "median") -> np.ndarray:
    """Normalised heatmap -> bool prediction mask by the `median` or `fixed@t` rule."""
    if binarize == "median":
        flat = np.sort(heatmap, axis=None)
        return heatmap >= flat[flat.size // 2]
    if binarize.startswith("fixed@"):
        try:
            t = float(binarize[len("fixed@"):])
        except ValueError:
            raise ValueError(f"binarize {binarize!r}: the threshold after 'fixed@' must be a "
                             "number, e.g. 'fixed@0.5'") from None
        return heatmap > t
    raise ValueError(f"binarize must be 'median' or 'fixed@<t>', got {binarize!r}")


def ciou(heatmap: Any, gt_map: Any, binarize: str = "median") -> float:
    """cIoU of one image: sum(P*G) / (sum(G) + sum(P*[G==0])).

    heatmap: 2-D, any resolution (numpy or torch), higher = more likely sounding; a constant map
    predicts the whole image under every rule.
    gt_map: 2-D ground truth at evaluation resolution (e.g. 224x224), values in [0, 1]
    (consensus maps hold 0.5 for pixels marked by a single annotator). A ground truth that marks no
    pixel (a VGG-SS entry whose only boxes have no area) scores 0, as the formula gives it in the
    EZ-VSL evaluation (every prediction marks some pixel).
    """
    gt = to_numpy(gt_map, "gt_map", ndim=2)
    if gt.min() < 0 or gt.max() > 1:
        raise DataError("gt_map: values must lie in [0, 1]")
    if gt.sum() == 0:
        return 0.0
    source = to_numpy(heatmap, "heatmap", ndim=2)
    if float(source.max()) == float(source.min()):
        # constancy is decided on the map as given: bilinear resizing leaves ~1e-8 noise on a constant map,
        # which min-max normalisation would stretch to [0, 1]
        normalized = np.ones(gt.shape, dtype=np.float64)
    else:
        normalized = minmax_normalize(resize_bilinear(heatmap, gt.shape))
    pred = binarize_map(normalized, binarize)
    pred = pred.astype(np.float64)
    return float(np.sum(pred * gt) / (np.sum(gt) + np.sum(pred * (gt == 0))))


def summarize(cious: Sequence[float | Skipped], protocol: str = "ciou/median") -> dict:
    """Per-image cIoUs -> {protocol, N, skipped, AP50, AUC, mean_ciou}.

    AP50: fraction of images with cIoU >= 0.5. AUC: trapezoid area under the success rate
    (fraction with cIoU >= t) over t = 0, 0.05, ..., 1.0.
    """
    scored, skipped = split_skipped(cious)
    values = np.asarray(scored, dtype=np.float64)
    out: dict = {"protocol": protocol, "N": int(values.size), "skipped": skipped}
    if values.size == 0:
        logger.warning("localisation summary (%s): no scored images", protocol)
        return {**out, "AP50": float("nan"), "AUC": float("nan"), "mean_ciou": float("nan")}
    success = (values[None, :] >= AUC_THRESHOLDS[:, None]).mean(axis=1)
    auc = float(np.sum(np.diff(AUC_THRESHOLDS) * (success[1:] + success[:-1]) / 2))
    return {**out, "AP50": float(np.mean(values >= 0.5)), "AUC": auc,
            "mean_ciou": float(values.mean())}


def _rasterize(boxes_px: np.ndarray, h: int, w: int) -> np.ndarray:
    """(K, 4) integer pixel boxes -> (K, h, w) float masks, pixels [x0, x1) x [y0, y1)."""
    masks = np.zeros((len(boxes_px), h, w))
    for k, (x0, y0, x1, y1) in enumerate(boxes_px):
        masks[k, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = 1.0
    return masks


def _check_boxes(boxes: Any, name: str) -> np.ndarray:
    arr = to_numpy(boxes, name)
    if arr.size == 0:
        raise DataError(f"{name}: no boxes; localisation ground truth needs at least one box")
    if arr.ndim not in (1, 2) or arr.shape[-1] != 4:
        raise DataError(f"{name}: expected (4,) or (K, 4) boxes (x0, y0, x1, y1), got {arr.shape}")
    arr = arr.reshape(-1, 4)
    if np.any(arr[:, 2] < arr[:, 0]) or np.any(arr[:, 3] < arr[:, 1]):
        raise DataError(f"{name}: boxes must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0")
    return arr


def gt_from_boxes_consensus(boxes_per_annotator: Any, size: int = EVAL_SIZE,
                            orig_size: int = 256) -> np.ndarray:
    """Flickr-SoundNet consensus map: each box (pixels of an orig_size frame) scaled by
    size/orig_size and floored, rasterised, summed, divided by 2, clipped to 1.

    Every box counts once (an annotator with two boxes contributes both), as in the reference code.
    Returns float64 (size, size) with values in {0, 0.5, 1}.
    """
    arr = _check_boxes(boxes_per_annotator, "boxes_per_annotator")
    px = np.floor(arr * size / orig_size).astype(np.int64)
    return np.minimum(_rasterize(px, size, size).sum(axis=0) / 2.0, 1.0)


def gt_from_boxes_union(boxes: Any, size: int | Sequence[int] = EVAL_SIZE) -> np.ndarray:
    """VGG-SS map: union of normalised boxes (coordinates in [0, 1], clipped), binary float64.

    Coordinates are scaled by the width (x) or height (y) and floored to pixels.
    """
    h, w = _size2(size)
    arr = np.clip(_check_boxes(boxes, "boxes"), 0.0, 1.0)
    px = np.floor(arr * np.array([w, h, w, h])).astype(np.int64)
    return (_rasterize(px, h, w).sum(axis=0) > 0).astype(np.float64)


def center_heatmap(size: int | Sequence[int] = EVAL_SIZE, sigma: float = 0.25) -> np.ndarray:
    """`center` baseline: Gaussian centred in the image, std = sigma * side (per axis)."""
    h, w = _size2(size)
    y = (np.arange(h) - (h - 1) / 2) / (sigma * h)
    x = (np.arange(w) - (w - 1) / 2) / (sigma * w)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))


def full_heatmap(size: int | Sequence[int] = EVAL_SIZE) -> np.ndarray:
    """`full` baseline: a constant heatmap, which binarises to the whole image."""
    return np.ones(_size2(size))
