"""Drawing: handwritten digits upscaled and painted at non-overlapping places on a dark canvas."""
from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np

from avfusion.errors import DataError

BACKGROUND_MAX = 64  # background channels are drawn from [0, BACKGROUND_MAX)
PIXEL_NOISE = 6  # uniform integer pixel noise in [-PIXEL_NOISE, PIXEL_NOISE], per channel
MASK_THRESHOLD = 0.5  # stroke mask: upscaled glyph intensity > this
MIN_IMAGE_SIZE = 32
LAYOUTS = ("grid", "free")
#: Layout ``grid``: every digit covers GRID_SPAN x GRID_SPAN cells of GRID_CELL pixels (the patch size of
#: the benchmark's encoder), its corner on the cell grid, so that a patch sees one quarter of one glyph.
GRID_CELL = 16
GRID_SPAN = 2
_PLACE_TRIES = 64
_LAYOUT_TRIES = 32


@dataclass(frozen=True)
class Glyph:
    """One handwritten digit to draw: its 8x8 intensities in [0, 1], side in pixels, RGB colour."""

    pixels: np.ndarray
    size: int
    colour: np.ndarray


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise DataError(f"unknown AV-Digits layout {layout!r}; use one of {LAYOUTS}")
    return layout


def glyph_sizes(image_size: int, layout: str = "free") -> tuple[int, int]:
    """Smallest and largest digit side (inclusive): GRID_SPAN cells (``grid``), or about S/4 and S/2.4
    (``free``)."""
    if check_layout(layout) == "grid":
        return GRID_CELL * GRID_SPAN, GRID_CELL * GRID_SPAN
    return round(image_size / 4), round(image_size / 2.4)


def layout_step(layout: str) -> int:
    """The pixel step of the digits' corners: GRID_CELL (``grid``) or 1 (``free``)."""
    return GRID_CELL if check_layout(layout) == "grid" else 1


@functools.lru_cache(maxsize=64)
def _bilinear(n: int, m: int, repeat: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lo, hi) and weight of hi for n outputs from m inputs (half-pixel centres,
    clamped at the edges), each output repeated ``repeat`` times."""
    src = np.clip((np.arange(n) + 0.5) * (m / n) - 0.5, 0, m - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, m - 1)
    frac = (src - lo).astype(np.float32)
    out = tuple(np.repeat(a, repeat) for a in (lo, hi, frac))
    for a in out:
        a.flags.writeable = False
    return out


def upscale(pixels: np.ndarray, n: int, repeat: int = 1) -> np.ndarray:
    """(m, m) -> (n, n * repeat) float32 bilinear upscaling, each column repeated ``repeat`` times.

    Gathers and element-wise products only (no BLAS), so results are the same on every CPU.
    """
    lo, hi, frac = _bilinear(n, pixels.shape[0])
    rows = pixels[lo] + frac[:, None] * (pixels[hi] - pixels[lo])  # (n, m)
    lo, hi, frac = _bilinear(n, pixels.shape[1], repeat)
    return rows[:, lo] + frac * (rows[:, hi] - rows[:, lo])  # (n, n * repeat)


def bright_colour(rng: np.random.Generator) -> np.ndarray:
    """A random saturated, bright RGB colour as float32 in [0, 255]."""
    h, s, v = rng.random(3) * [1.0, 0.5, 0.15] + [0.0, 0.5, 0.85]  # s in [0.5, 1), v in [0.85, 1)
    return np.asarray(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255


# The canvas while drawing is float32 (S, S * 3): RGB interleaved along each row, i.e. an (S, S, 3)
# image seen as 2-D, so that every blend runs over long contiguous rows.

def background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """(S, S * 3) float32 canvas of one dark random colour."""
    colour = rng.integers(0, BACKGROUND_MAX, 3).astype(np.float32)
    img = np.empty((image_size, image_size * 3), dtype=np.float32)
    img[:] = np.tile(colour, image_size)
    return img


def layout(rng: np.random.Generator, sizes: list[int], image_size: int, step: int = 1) -> list[tuple[int, int]]:
    """Top-left corners (y, x), multiples of ``step``, of squares of the given sides, pairwise disjoint,
    by rejection sampling.

    Each square draws 64 candidate corners at once and takes the first that overlaps no square
    placed before it; if none does, the whole layout restarts (at most 32 times).
    """
    for _ in range(_LAYOUT_TRIES):
        corners: list[tuple[int, int]] = []
        for n in sizes:
            if n > image_size:
                break
            yx = rng.integers(0, (image_size - n) // step + 1, (_PLACE_TRIES, 2)) * step  # (tries, 2)
            free = np.ones(_PLACE_TRIES, dtype=bool)
            for (y2, x2), n2 in zip(corners, sizes):
                free &= ((yx[:, 0] >= y2 + n2) | (yx[:, 0] + n <= y2)
                         | (yx[:, 1] >= x2 + n2) | (yx[:, 1] + n <= x2))
            if not free.any():
                break
            y, x = yx[int(np.argmax(free))]
            corners.append((int(y), int(x)))
        if len(corners) == len(sizes):
            return corners
    raise DataError(f"cannot place digits of sides {sizes} without overlap on a {image_size}-pixel "
                    f"canvas{f' with corners on a {step}-pixel grid' if step > 1 else ''}; use a larger image_size")


def paint(canvas: np.ndarray, glyph: Glyph, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-blend one glyph (alpha = upscaled intensity) in place at corner (y, x) of an (S, S * 3) canvas.

    Returns its box (x0, y0, x1, y1) on the canvas, exclusive ends, tight around its stroke mask,
    and that mask within the glyph's square, (n, n) bool (upscaled intensity > 0.5).
    """
    n = glyph.size
    alpha = upscale(glyph.pixels, n, repeat=3)  # (n, n * 3) in [0, 1]
    region = canvas[y:y + n, 3 * x:3 * (x + n)]
    region += alpha * (np.tile(glyph.colour, n) - region)
    mask = alpha[:, ::3] > MASK_THRESHOLD  # (n, n)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise DataError("a digit image has no pixel above the mask threshold")
    box = np.array([x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1], dtype=np.int64)
    return box, mask


def finish(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Add mild uniform integer pixel noise and quantise: (S, S * 3) float32 -> (S, S, 3) uint8.

    ``canvas`` is overwritten.
    """
    canvas += rng.integers(-PIXEL_NOISE, PIXEL_NOISE + 1, canvas.shape, dtype=np.int8)
    np.rint(canvas, out=canvas)
    np.clip(canvas, 0, 255, out=canvas)
    return canvas.astype(np.uint8).reshape(canvas.shape[0], -1, 3)
