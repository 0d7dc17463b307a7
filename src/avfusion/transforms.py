"""Image transforms of the official pipeline, without torchvision, with explicit randomness.

Images are (H, W, 3) uint8 numpy arrays or float tensors (..., C, H, W) in [0, 1]; outputs are float
tensors (..., C, h, w). Train: RandomResizedCrop(size, scale=(crop_min, 1), ratio=(3/4, 4/3)) then a
horizontal flip with probability 0.5. Eval: resize the shorter side to int(256 * size / 224), centre
crop `size`. Resizing is bilinear with antialiasing (`F.interpolate`, half-pixel centres).

Joint versions move boxes (x0, y0, x1, y1) in pixel-edge coordinates (a pixel spans [i, i+1)) and
masks (nearest neighbour, "nearest-exact") through the same geometry as the image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "Geometry", "to_float_tensor", "normalize", "normalize_uint8", "resize",
    "random_resized_crop_params", "train_geometry", "eval_geometry", "apply_geometry",
    "apply_geometry_boxes", "apply_geometry_mask", "train_transform", "eval_transform",
    "train_transform_joint", "eval_transform_joint",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Geometry:
    """A resize to `resize_to` (h, w), then a crop (top, left, height, width), then a resize to `out`,
    then an optional horizontal flip. Each step may be a no-op; all sizes in pixels."""
    resize_to: tuple[int, int]
    crop: tuple[int, int, int, int]
    out: tuple[int, int]
    flip: bool = False


def to_float_tensor(image) -> torch.Tensor:
    """uint8 (H, W, C) numpy/tensor -> float32 (C, H, W) in [0, 1]; float (..., C, H, W) passes through."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if image.dtype == torch.uint8:
        if image.ndim != 3:
            raise ValueError(f"uint8 images must be (H, W, C), got shape {tuple(image.shape)}")
        return image.permute(2, 0, 1).float().div_(255.0)
    if not torch.is_floating_point(image):
        raise TypeError(f"image must be uint8 HWC or float CHW, got {image.dtype}")
    return image


def normalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """(..., C, H, W) -> (x - mean) / std per channel."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


@lru_cache(maxsize=8)
def _uint8_affine(mean: tuple, std: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (C, 1, 1) float32, with x * scale + shift = (x / 255 - mean) / std."""
    m, s = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    return (1.0 / (255.0 * s)).float().view(-1, 1, 1), (-m / s).float().view(-1, 1, 1)


def normalize_uint8(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (..., C, H, W) -> float32 (x / 255 - mean) / std per channel, in one multiply-add
    (equal to `normalize` of x / 255 up to float rounding, and about 3x cheaper)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize_uint8 takes uint8 images, got {x.dtype}")
    scale, shift = _uint8_affine(tuple(mean), tuple(std))
    return torch.addcmul(shift.to(x.device), x.float(), scale.to(x.device))


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(..., C, H, W) -> (..., C, h, w). Bilinear uses antialiasing; other modes go through as given."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])                                       # (N, C, H, W)
    if mode == "bilinear":
        out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=True)
    else:
        out = F.interpolate(flat, size=size, mode=mode)
    return out.reshape(*lead, *out.shape[-3:])


def random_resized_crop_params(height: int, width: int, generator: torch.Generator,
                               scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop with area fraction in `scale` and aspect w/h in `ratio` (log-uniform).

    Up to 10 tries; otherwise the largest centred crop whose aspect is clamped into `ratio`.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_geometry(height: int, width: int, size: int, generator: torch.Generator,
                   crop_min: float = 0.5) -> Geometry:
    """Random resized crop (scale (crop_min, 1), ratio (3/4, 4/3)) to size x size, flip with p 0.5."""
    crop = random_resized_crop_params(height, width, generator, scale=(crop_min, 1.0))
    flip = bool(torch.rand(1, generator=generator).item() < 0.5)
    return Geometry((height, width), crop, (size, size), flip)


def eval_geometry(height: int, width: int, size: int) -> Geometry:
    """Shorter side to int(256 * size / 224) (longer side scaled and truncated), centre crop size x size."""
    short = int(256 * size / 224)
    if height <= width:
        rh, rw = short, int(short * width / height)
    else:
        rh, rw = int(short * height / width), short
    top, left = int(round((rh - size) / 2.0)), int(round((rw - size) / 2.0))
    return Geometry((rh, rw), (top, left, size, size), (size, size), False)


def apply_geometry(x: torch.Tensor, geo: Geometry, mode: str = "bilinear") -> torch.Tensor:
    """(..., C, H, W) -> (..., C, *geo.out)."""
    x = resize(x, geo.resize_to, mode)
    top, left, h, w = geo.crop
    x = x[..., top:top + h, left:left + w]
    x = resize(x, geo.out, mode)
    return x.flip(-1) if geo.flip else x


def apply_geometry_mask(mask, geo: Geometry) -> torch.Tensor:
    """(H, W) or (K, H, W) integer/bool mask -> same dtype, (..., *geo.out), nearest neighbour."""
    m = torch.as_tensor(np.ascontiguousarray(mask) if isinstance(mask, np.ndarray) else mask)
    dtype = m.dtype
    x = m.reshape(-1, 1, *m.shape[-2:]).float()                               # (K, 1, H, W)
    x = apply_geometry(x, geo, mode="nearest-exact")
    return x.reshape(*m.shape[:-2], *x.shape[-2:]).round().to(dtype)


def apply_geometry_boxes(boxes, geo: Geometry, src_hw: tuple[int, int]) -> torch.Tensor:
    """(N, 4) boxes (x0, y0, x1, y1) in source pixels -> output pixels, clipped to the output.

    Boxes that fall outside the crop come back with zero width or height; they are not removed,
    so they stay aligned with their labels.
    """
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4).clone()
    (rh, rw), (top, left, h, w), (oh, ow) = geo.resize_to, geo.crop, geo.out
    sx, sy = rw / src_hw[1] * ow / w, rh / src_hw[0] * oh / h
    ox, oy = -left * ow / w, -top * oh / h                                   # after the first resize
    b[:, 0::2] = b[:, 0::2] * sx + ox
    b[:, 1::2] = b[:, 1::2] * sy + oy
    b[:, 0::2] = b[:, 0::2].clamp(0, ow)
    b[:, 1::2] = b[:, 1::2].clamp(0, oh)
    if geo.flip:
        b[:, [0, 2]] = ow - b[:, [2, 0]]
    return b.float()


def _finish(x: torch.Tensor, geo: Geometry, do_normalize: bool) -> torch.Tensor:
    x = apply_geometry(x, geo)
    return normalize(x) if do_normalize else x


def train_transform(image, size: int, generator: torch.Generator, crop_min: float = 0.5,
                    do_normalize: bool = True) -> torch.Tensor:
    """Training view of one image: (..., 3, size, size), ImageNet-normalised by default."""
    x = to_float_tensor(image)
    return _finish(x, train_geometry(*x.shape[-2:], size, generator, crop_min), do_normalize)


def eval_transform(image, size: int = 224, do_normalize: bool = True) -> torch.Tensor:
    """Evaluation view of one image: (..., 3, size, size), ImageNet-normalised by default."""
    x = to_float_tensor(image)
    return _finish(x, eval_geometry(*x.shape[-2:], size), do_normalize)


def _joint(x: torch.Tensor, geo: Geometry, boxes, mask, do_normalize: bool):
    src_hw = tuple(x.shape[-2:])
    if mask is not None and tuple(mask.shape[-2:]) != src_hw:
        raise ValueError(f"mask size {tuple(mask.shape[-2:])} != image size {src_hw}")
    out_boxes = apply_geometry_boxes(boxes, geo, src_hw) if boxes is not None else None
    out_mask = apply_geometry_mask(mask, geo) if mask is not None else None
    return _finish(x, geo, do_normalize), out_boxes, out_mask


def train_transform_joint(image, boxes=None, mask=None, *, size: int, generator: torch.Generator,
                          crop_min: float = 0.5, do_normalize: bool = True):
    """`train_transform` applied jointly: returns (image, boxes or None, mask or None)."""
    x = to_float_tensor(image)
    geo = train_geometry(*x.shape[-2:], size, generator, crop_min)
    return _joint(x, geo, boxes, mask, do_normalize)


def eval_transform_joint(image, boxes=None, mask=None, *, size: int = 224, do_normalize: bool = True):
    """`eval_transform` applied jointly: returns (image, boxes or None, mask or None)."""
    x = to_float_tensor(image)
    return _joint(x, eval_geometry(*x.shape[-2:], size), boxes, mask, do_normalize)
