"""Helpers shared by the metric protocols: array conversion and skipped items."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from avfusion.errors import DataError


@dataclass(frozen=True)
class Skipped:
    """An item a protocol did not score, with the reason (counted in every summary)."""

    reason: str


def to_numpy(x: Any, name: str, ndim: int | tuple[int, ...] | None = None,
             dtype: Any = np.float64) -> np.ndarray:
    """numpy or torch (any device, any grad state) -> numpy array of `dtype`; checks ndim."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    raw = np.asarray(x)
    if np.issubdtype(dtype, np.integer) and raw.dtype.kind == "f" and np.any(raw != np.round(raw)):
        raise DataError(f"{name}: expected integer values")
    arr = raw.astype(dtype, copy=False)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise DataError(f"{name}: expected {' or '.join(map(str, allowed))}-D input, "
                            f"got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise DataError(f"{name}: contains NaN or infinite values")
    return arr


def binary_mask(x: Any, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """A boolean or 0/1 array -> bool array; anything else (e.g. probabilities) is a DataError."""
    arr = to_numpy(x, name, ndim)
    if not np.all((arr == 0) | (arr == 1)):
        raise DataError(f"{name}: expected a binary mask (bool or 0/1 values); threshold "
                        "probabilities first")
    return arr.astype(bool)


def probabilities(x: Any, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Values in [0, 1] (apply sigmoid to logits first), else DataError."""
    arr = to_numpy(x, name, ndim)
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise DataError(f"{name}: expected probabilities in [0, 1], got range "
                        f"[{arr.min():.4g}, {arr.max():.4g}]; apply sigmoid to logits first")
    return arr


def split_skipped(results: Iterable[Any]) -> tuple[list[Any], dict[str, int]]:
    """Separate scored results from `Skipped` markers; returns (scored, {reason: count})."""
    scored, reasons = [], Counter()
    for r in results:
        if isinstance(r, Skipped):
            reasons[r.reason] += 1
        else:
            scored.append(r)
    return scored, dict(sorted(reasons.items()))
