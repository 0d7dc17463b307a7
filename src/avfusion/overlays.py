"""Pictures of localisation heatmaps and segmentation masks over their images, written as PNG.

Pure rendering (numpy in, file out) with matplotlib's Agg canvas, never pyplot's global state, so it
works in any process without a display. Images are (H, W, 3) uint8 or float in [0, 1], or
ImageNet-normalised (3, H, W) tensors (see :func:`display_image`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avfusion.errors import DataError

TRUE_COLOUR = "lime"      # ground truth: box edges and mask outlines
OTHER_COLOUR = "white"    # other annotated objects (e.g. silent digits)
PRED_RGB = np.array([1.0, 0.15, 0.15])  # predicted mask tint


def display_image(image: Any) -> np.ndarray:
    """Any image -> (H, W, 3) float in [0, 1]. A float (3, H, W) tensor/array is taken as
    ImageNet-normalised and un-normalised; uint8 is divided by 255."""
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        from avfusion.transforms import IMAGENET_MEAN, IMAGENET_STD
        arr = arr.transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    elif arr.dtype == np.uint8:
        arr = arr / 255.0
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise DataError(f"expected an RGB image (H, W, 3) or (3, H, W), got shape {arr.shape}")
    return np.clip(arr.astype(np.float64), 0.0, 1.0)


def upsample(heatmap: Any, size: tuple[int, int]) -> np.ndarray:
    """A (rows, cols) map -> (H, W) by bilinear interpolation with half-pixel centres (each patch
    value sits at its patch's centre), min-max normalised to [0, 1]."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(heatmap, dtype=np.float64))[None, None]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    lo, hi = out.min(), out.max()
    return np.ones_like(out) if hi == lo else (out - lo) / (hi - lo)


def _figure(n: int, columns: int, panel: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(1, -(-n // columns))
    cols = min(n, columns)
    fig = Figure(figsize=(panel * cols, (panel + 0.25) * rows + 0.3), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _box(ax, box: Sequence[float], colour: str, width: float = 2.0) -> None:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 > x0 and y1 > y0:  # zero rows pad box lists
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=width))


def _save(fig, path: str | Path, title: str | None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, format="png")
    return path


def save_heatmap_overlays(path: str | Path, images: Sequence[Any], heatmaps: Sequence[Any],
                          boxes: Sequence[Any] | None = None, other_boxes: Sequence[Any] | None = None,
                          captions: Sequence[str] | None = None, title: str | None = None,
                          columns: int = 6, panel: float = 2.2, alpha: float = 0.5) -> Path:
    """One panel per image: the image, its heatmap (upsampled, normalised, 'jet' at ``alpha``), the
    true box(es) in green and ``other_boxes`` (e.g. silent digits) in white. Boxes are pixel
    (x0, y0, x1, y1) with exclusive ends, one (4,) or (K, 4) array per image."""
    if len(images) != len(heatmaps):
        raise DataError(f"{len(images)} images but {len(heatmaps)} heatmaps")
    fig, axes = _figure(len(images), columns, panel)
    for i, ax in enumerate(axes):
        img = display_image(images[i])
        ax.imshow(img, interpolation="nearest")
        ax.imshow(upsample(heatmaps[i], img.shape[:2]), cmap="jet", alpha=alpha, vmin=0, vmax=1,
                  interpolation="nearest")
        for group, colour in ((other_boxes, OTHER_COLOUR), (boxes, TRUE_COLOUR)):
            if group is not None:
                for box in np.asarray(group[i], dtype=np.float64).reshape(-1, 4):
                    _box(ax, box, colour)
        if captions is not None:
            ax.set_title(captions[i], fontsize=8)
    return _save(fig, path, title)


def save_segmentation_overlays(path: str | Path, images: Sequence[Any], probs: Sequence[Any],
                               targets: Sequence[Any], captions: Sequence[str] | None = None,
                               title: str | None = None, columns: int = 6, panel: float = 2.2,
                               threshold: float = 0.5) -> Path:
    """One panel per image: the image in grey (so that no object colour hides the tint), the
    predicted mask (prob > ``threshold``) tinted red and the true mask's outline in green.
    ``probs`` and ``targets`` are (H, W) at image resolution."""
    if not len(images) == len(probs) == len(targets):
        raise DataError(f"{len(images)} images, {len(probs)} predictions and {len(targets)} targets differ in number")
    fig, axes = _figure(len(images), columns, panel)
    for i, ax in enumerate(axes):
        img = display_image(images[i])
        pred = np.asarray(probs[i]) > threshold
        gt = np.asarray(targets[i]) > 0.5
        if pred.shape != img.shape[:2] or gt.shape != img.shape[:2]:
            raise DataError(f"panel {i}: masks {pred.shape}, {gt.shape} do not match the image {img.shape[:2]}")
        shown = np.repeat(img.mean(-1, keepdims=True), 3, axis=-1)
        shown[pred] = 0.35 * shown[pred] + 0.65 * PRED_RGB
        ax.imshow(shown, interpolation="nearest")
        if gt.any():
            ax.contour(gt.astype(float), levels=[0.5], colors=TRUE_COLOUR, linewidths=1.5)
        if captions is not None:
            ax.set_title(captions[i], fontsize=8)
    return _save(fig, path, title)
