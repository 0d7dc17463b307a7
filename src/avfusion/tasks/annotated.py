"""AV-Digits scenes with their spatial annotations, for localisation and segmentation.

The samples are those of :class:`avfusion.tasks.common.AVDigitsSamples` (same image and audio
processing) plus, in pixels of the ``data.image_size`` canvas:

- ``box`` (4,) float32: the sounding digit's box (x0, y0, x1, y1), exclusive ends;
- ``boxes`` (3, 4) float32 and ``num_digits``: every visible digit's box (zero rows pad);
- ``mask`` (S, S) bool: the sounding digit's stroke mask;
- ``all_digits`` (S, S) bool: the union of every visible digit's box (the segmentation target's baseline);
- ``all_strokes`` (S, S) bool: the union of every visible digit's stroke mask: what a segmenter that
  finds the digits but does not pick the speaking one predicts.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from avfusion.tasks.common import AVDigitsTaskSet, DataConfig


def boxes_mask(boxes: np.ndarray, size: int) -> np.ndarray:
    """(K, 4) pixel boxes (x0, y0, x1, y1), exclusive ends -> (size, size) bool union."""
    out = np.zeros((size, size), dtype=bool)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.int64).reshape(-1, 4):
        out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return out


class AnnotatedAVDigits(AVDigitsTaskSet):
    """``size`` scenes of ``split`` with image, audio, label, index and annotations."""

    def __init__(self, split: str, data: DataConfig, seed: int = 0, size: int | None = None, train: bool = False):
        super().__init__(split, data, seed, size, train)

    def _prepare(self, i: int) -> dict[str, Any]:
        from avfusion.audio import log_mel_spectrogram

        scene = self.scenes[i]
        size = self.data.image_size
        k = int(scene["num_digits"])
        return {
            "image": torch.from_numpy(scene["image"]).permute(2, 0, 1).contiguous(),  # (3, S, S) uint8
            "audio": log_mel_spectrogram(torch.from_numpy(scene["audio"]), self.data.sample_rate,
                                         self.data.n_mels, self.data.window)[None],  # (1, n_mels, frames)
            "label": int(scene["label"]),
            "box": torch.as_tensor(scene["box"], dtype=torch.float32),
            "boxes": torch.as_tensor(scene["boxes"], dtype=torch.float32),
            "num_digits": k,
            "mask": torch.from_numpy(np.asarray(scene["mask"], dtype=bool)),
            "all_digits": torch.from_numpy(boxes_mask(scene["boxes"][:k], size)),
            "all_strokes": torch.from_numpy(np.asarray(scene["masks"], dtype=bool)[:k].any(0)),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        from avfusion.transforms import normalize_uint8

        i = int(index)
        item = self._cache.get(i, self._prepare)
        out = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in item.items()}
        out["image"] = normalize_uint8(item["image"])
        out["index"] = i
        return out
