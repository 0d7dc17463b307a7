"""Separation over many windows: the residual's mask, and overlap-add of per-window waveforms."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

_MIN_WEIGHT = 1e-3
_LOGIT_CLAMP = 30.0


def residual_logits(logits: torch.Tensor) -> torch.Tensor:
    """(R, ..., n_mels, T) mask logits of R regions -> (..., n_mels, T) logits of what none claims:
    prod_r (1 - sigmoid(logit_r)), as logits (so `mask_to_waveform` applies it)."""
    log_rest = torch.nn.functional.logsigmoid(-logits).sum(0)          # log prod (1 - p_r)
    log_claimed = torch.log((-torch.expm1(log_rest)).clamp(min=1e-12))  # log (1 - prod)
    return (log_rest - log_claimed).clamp(-_LOGIT_CLAMP, _LOGIT_CLAMP)


def window_weights(length: int) -> np.ndarray:
    """A triangle over one window (peak in the middle, never quite zero): crossfades overlapping windows."""
    t = np.arange(length, dtype=np.float64) + 0.5
    return np.maximum(np.minimum(t, length - t) / (length / 2.0), _MIN_WEIGHT)


def overlap_add(pieces: np.ndarray, starts: Sequence[int], total: int) -> np.ndarray:
    """(N, T) per-window waveforms placed at sample `starts` -> (total,), weighted mean where windows overlap.

    Where one window covers a sample the result is that window's sample exactly; past `total` is dropped.
    """
    out = np.zeros(total, np.float64)
    weight = np.zeros(total, np.float64)
    w = window_weights(pieces.shape[1])
    for piece, a in zip(pieces, starts):
        n = max(0, min(pieces.shape[1], total - a))
        out[a:a + n] += piece[:n] * w[:n]
        weight[a:a + n] += w[:n]
    return (out / np.maximum(weight, 1e-12)).astype(np.float32)
