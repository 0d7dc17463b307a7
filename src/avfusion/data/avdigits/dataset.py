"""AV-Digits as torch datasets (lazy, optionally cached) and as whole-split numpy arrays."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from avfusion.data.avdigits.canvas import check_layout
from avfusion.data.avdigits.scene import (DEFAULT_IMAGE_SIZE, DEFAULT_LAYOUT, render_glyph, render_mixture,
                                          render_scene, render_sound)
from avfusion.data.avdigits.sources import check_split
from avfusion.errors import DataError

logger = logging.getLogger(__name__)

SCENE_SIZES = {"train": 6000, "test": 1000}
MIXTURE_SIZES = {"train": 6000, "test": 500}


def _size(size: int | None, defaults: dict[str, int], split: str) -> int:
    size = defaults[check_split(split)] if size is None else int(size)
    if size < 0:
        raise DataError(f"dataset size must be non-negative, got {size}")
    return size


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in item.items()}


class AVDigits(Dataset):
    """``size`` scenes of ``split`` (default 6000 train / 1000 test) from scene ``start`` on, rendered on demand.

    Items are dicts of numpy arrays and scalars (see :func:`render_scene`); ``cache`` keeps each
    rendered item in memory (about 100 kB a scene at S = 96) and hands out copies. ``start`` may move
    (:meth:`set_start`: a training set that draws a fresh range of scenes every epoch); the cache is
    then emptied.
    """

    _render = staticmethod(render_scene)
    _defaults = SCENE_SIZES

    def __init__(self, split: str = "train", size: int | None = None, seed: int = 0,
                 image_size: int = DEFAULT_IMAGE_SIZE, cache: bool = True,
                 transform: Callable[[dict[str, Any]], Any] | None = None, layout: str = DEFAULT_LAYOUT,
                 start: int = 0):
        self.split = check_split(split)
        self.size = _size(size, self._defaults, split)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.layout = check_layout(layout)
        self.transform = transform
        self._cache: dict[int, dict[str, Any]] | None = {} if cache else None
        self.start = 0
        self.set_start(start)

    def set_start(self, start: int) -> None:
        """Item ``i`` is scene ``start + i`` from now on."""
        if int(start) < 0:
            raise DataError(f"start must be non-negative, got {start}")
        if int(start) != self.start and self._cache is not None:
            self._cache.clear()
        self.start = int(start)

    def _render_item(self, i: int) -> dict[str, Any]:
        return self._render(self.split, self.start + i, self.seed, self.image_size, self.layout)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Any:
        i = int(index)
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of size {self.size}")
        if self._cache is None:
            item = self._render_item(i)
        else:
            if i not in self._cache:
                self._cache[i] = self._render_item(i)
            item = _copy(self._cache[i])
        return item if self.transform is None else self.transform(item)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, size={self.size}, seed={self.seed}, "
                f"image_size={self.image_size}, layout={self.layout!r}, start={self.start})")


class AVDigitsMixtures(AVDigits):
    """Two-voice mixtures of ``split`` (default 6000 train / 500 test); items from :func:`render_mixture`."""

    _render = staticmethod(render_mixture)
    _defaults = MIXTURE_SIZES

    def __init__(self, split: str = "test", size: int | None = None, seed: int = 0,
                 image_size: int = DEFAULT_IMAGE_SIZE, cache: bool = True,
                 transform: Callable[[dict[str, Any]], Any] | None = None, layout: str = DEFAULT_LAYOUT,
                 start: int = 0):
        super().__init__(split, size, seed, image_size, cache, transform, layout, start)


class AVDigitsGlyphs(AVDigits):
    """The unimodal image pool: handwritten digits on canvases, no sound (:func:`render_glyph`; one digit
    per canvas, or 1..``max_digits``)."""

    def __init__(self, split: str = "train", size: int | None = None, seed: int = 0,
                 image_size: int = DEFAULT_IMAGE_SIZE, cache: bool = True,
                 transform: Callable[[dict[str, Any]], Any] | None = None, layout: str = DEFAULT_LAYOUT,
                 start: int = 0, max_digits: int = 1):
        self.max_digits = int(max_digits)
        super().__init__(split, size, seed, image_size, cache, transform, layout, start)

    def _render_item(self, i: int) -> dict[str, Any]:
        return render_glyph(self.split, self.start + i, self.seed, self.image_size, self.layout, self.max_digits)


class AVDigitsSounds(AVDigits):
    """The unimodal audio pool: one spoken digit per 1 s window, no image (:func:`render_sound`)."""

    def _render_item(self, i: int) -> dict[str, Any]:
        return render_sound(self.split, self.start + i, self.seed)


def _stack(render: Callable[..., dict[str, Any]], split: str, size: int, seed: int,
           image_size: int, layout: str) -> dict[str, np.ndarray]:
    start = time.perf_counter()
    out: dict[str, np.ndarray] = {}
    for i in range(size):
        item = render(split, i, seed, image_size, layout)
        if not out:
            out = {k: np.empty((size, *np.shape(v)), dtype=np.asarray(v).dtype) for k, v in item.items()}
            out = {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in out.items()}
        for k, v in item.items():
            out[k][i] = v
    out = {k: v.astype(str) if v.dtype == object else v for k, v in out.items()}
    logger.info("rendered %d AV-Digits %s items (%s) in %.1f s", size, split, render.__name__,
                time.perf_counter() - start)
    return out


def render_split(split: str, size: int | None = None, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE,
                 layout: str = DEFAULT_LAYOUT) -> dict[str, np.ndarray]:
    """Scenes 0..size-1 of ``split`` stacked: image (N,S,S,3) uint8, audio (N,16000) float32, ..."""
    return _stack(render_scene, split, _size(size, SCENE_SIZES, split), seed, image_size, layout)


def render_mixtures(split: str = "test", size: int | None = None, seed: int = 0,
                    image_size: int = DEFAULT_IMAGE_SIZE, layout: str = DEFAULT_LAYOUT) -> dict[str, np.ndarray]:
    """Mixtures 0..size-1 of ``split`` stacked: mixture (N,16000), target (N,2,16000), image (N,2,S,S,3), ..."""
    return _stack(render_mixture, split, _size(size, MIXTURE_SIZES, split), seed, image_size, layout)
