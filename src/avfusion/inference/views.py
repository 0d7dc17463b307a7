"""What part of a frame the model sees, and the image regions a separation is conditioned on.

fit "crop": the evaluation view of classification (shorter side to 256/224 of the input, centre
crop), so a wide frame loses its sides; fit "squash": the whole frame resized to the model's input
(the localisation evaluation's view), so every pixel gets a value.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from avfusion.errors import ConfigError
from avfusion.inference.results import Region
from avfusion.transforms import Geometry

FITS = ("crop", "squash")
PREVIEW_SIDE = 512   # longer side of the frames kept in results for pictures


def model_view(height: int, width: int, image_size: tuple[int, int], fit: str) -> tuple[Geometry, Region]:
    """The geometry from a (height, width) frame to the model input, and the frame region it shows."""
    from avfusion.data.clips import eval_geometry

    if fit not in FITS:
        raise ConfigError(f"fit must be one of {FITS}, got {fit!r}")
    size = (int(image_size[0]), int(image_size[1]))
    if fit == "squash":
        return Geometry(size, (0, 0, *size), size), Region((0.0, 0.0, float(width), float(height)), (height, width))
    geo = eval_geometry(height, width, size)
    (rh, rw), (top, left, ch, cw) = geo.resize_to, geo.crop
    sx, sy = width / rw, height / rh
    return geo, Region((left * sx, top * sy, (left + cw) * sx, (top + ch) * sy), (height, width))


def model_input(frames: np.ndarray, geo: Geometry) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, h, w) ImageNet-normalised model input."""
    from avfusion.data.clips import transform_frames

    return transform_frames(frames, geo)


def crop_input(frames: np.ndarray, box: Sequence[float], image_size: tuple[int, int]) -> torch.Tensor:
    """The box (x0, y0, x1, y1) of each frame, resized to the model input: (B, 3, h, w)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = frames[:, y0:y1, x0:x1]
    size = (int(image_size[0]), int(image_size[1]))
    return model_input(crop, Geometry(size, (0, 0, *size), size))


def region_box(spec: Sequence[float], height: int, width: int) -> tuple[float, float, float, float]:
    """A point (x, y) or a box (x0, y0, x1, y1) in frame pixels -> a box inside the frame.

    A point stands for the square of side min(H, W) / 2 centred on it (moved inside the frame).
    """
    spec = [float(v) for v in spec]
    if len(spec) == 2:
        x, y = spec
        if not (0 <= x <= width and 0 <= y <= height):
            raise ConfigError(f"point ({x:g}, {y:g}) lies outside the {width}x{height} frame")
        side = max(1.0, min(height, width) / 2.0)
        x0 = min(max(0.0, x - side / 2.0), width - side)
        y0 = min(max(0.0, y - side / 2.0), height - side)
        return x0, y0, x0 + side, y0 + side
    if len(spec) != 4:
        raise ConfigError(f"a region is a point (x, y) or a box (x0, y0, x1, y1), got {spec}")
    x0, y0 = max(0.0, spec[0]), max(0.0, spec[1])
    x1, y1 = min(float(width), spec[2]), min(float(height), spec[3])
    if not (x1 - x0 >= 1 and y1 - y0 >= 1):
        raise ConfigError(f"box {spec} holds no pixel of the {width}x{height} frame (give x0 < x1, y0 < y1 in pixels)")
    return x0, y0, x1, y1


def preview(frames: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """(B, H, W, 3) uint8 frames with the longer side at most `side` (aspect kept)."""
    h, w = frames.shape[1:3]
    scale = side / max(h, w)
    if scale >= 1:
        return frames.copy()
    size = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
    from avfusion.transforms import resize

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = resize(x, size).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()
