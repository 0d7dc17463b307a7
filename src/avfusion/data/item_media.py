"""Reading what one index `Item` contributes to a sample: frames, audio windows, and a mask.

An item is either a video (`media[0]`, audio inside it or in `item.audio`) or still frames
(`item.frames` with `item.audio`; frame k of n shows slot k of the audio span, e.g. AVSBench's one
frame per second). The span is (`item.start` or 0, `item.end` or the audio file's duration).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from avfusion.audio import pad_or_repeat
from avfusion.data.indexes import Item
from avfusion.media import open_clip, read_image, read_mask
from avfusion.data.sampling import (Window, choose_frame, dense_windows, eval_window, slot_window,
                                    train_window)
from avfusion.errors import DataError

__all__ = ["View", "read_view", "fit_length"]


@dataclass
class View:
    """Raw media of one item for `windows`: frames[j] and audio[j] belong to windows[j]."""

    windows: list[Window]
    frames: np.ndarray                 # (N, H, W, 3) uint8
    audio: np.ndarray                  # (N, samples) float32, each exactly window * rate long
    mask: np.ndarray | None = None     # (H, W) int64, the chosen still frame's mask (single window only)
    frame_index: int | None = None     # which still frame was used (single window only)


def fit_length(waveform: np.ndarray, num: int) -> np.ndarray:
    """Crop or extend (official repeat rule) a 1-D waveform to `num` samples."""
    if waveform.shape[-1] == num:
        return waveform
    return pad_or_repeat(torch.from_numpy(np.ascontiguousarray(waveform)), num).numpy()


def _sources(item: Item):
    if len(item.media) > 1:
        raise DataError(f"item {item.id!r} holds {len(item.media)} media files (a separation mixture); "
                        "read it with MixtureDataset")
    video = item.media[0] if item.media else None
    audio = item.audio if item.audio is not None else video
    if audio is None:
        raise DataError(f"item {item.id!r} has no audio (neither media nor audio file)")
    if video is None and not item.frames:
        raise DataError(f"item {item.id!r} has no image (neither media nor frames)")
    return video, audio


def _span(item: Item, duration: float) -> tuple[float, float]:
    lo = float(item.start) if item.start is not None else 0.0
    hi = float(item.end) if item.end is not None else duration
    if not hi > lo:
        raise DataError(f"item {item.id!r}: empty span ({lo}, {hi}) s (file duration {duration:.3f} s)")
    return lo, hi


def _plan(item: Item, lo: float, hi: float, window: float, rng, dense: int | None):
    """(windows, still-frame index per window or None) for this item."""
    if dense:
        windows = dense_windows(lo, hi, window, dense)
    elif item.frames:
        annotated = [m is not None for m in item.masks] if item.masks else None
        k = choose_frame(len(item.frames), annotated, rng)
        return [slot_window(lo, hi, window, k, len(item.frames), rng)], [k]
    else:
        windows = [train_window(lo, hi, window, rng) if rng is not None else eval_window(lo, hi, window)]
    if not item.frames:
        return windows, None
    n = len(item.frames)
    return windows, [min(n - 1, int((w.frame - lo) / (hi - lo) * n)) for w in windows]


def _audio(clip, windows: Sequence[Window], hi: float, sample_rate: int, window: float) -> np.ndarray:
    """(N, samples): one decode over all windows, sliced; parts past the span end are repeat-padded."""
    num = int(round(window * sample_rate))
    first, last = windows[0].start, min(max(w.end for w in windows), hi)
    wave = clip.audio(first, last, sample_rate)
    out = np.empty((len(windows), num), np.float32)
    for j, w in enumerate(windows):
        a = int(round((w.start - first) * sample_rate))
        b = min(a + num, int(round((min(w.end, hi) - first) * sample_rate)))
        out[j] = fit_length(wave[a:max(b, a + 1)], num)
    return out


def read_view(item: Item, *, window: float, sample_rate: int, frame_mode: str = "exact",
              rng: np.random.Generator | None = None, dense: int | None = None) -> View:
    """Read `item` for one window (training when `rng` is given, else centred) or `dense` windows.

    Raises DecodeError for unreadable media and DataError for an item that cannot form a sample.
    """
    video, audio_path = _sources(item)
    with contextlib.ExitStack() as stack:
        aud = stack.enter_context(open_clip(audio_path))
        lo, hi = _span(item, aud.duration)
        windows, slots = _plan(item, lo, hi, window, rng, dense)
        audio = _audio(aud, windows, hi, sample_rate, window)
        if slots is None:
            vid = aud if video == audio_path else stack.enter_context(open_clip(video))
            frames = vid.frames([w.frame for w in windows], frame_mode)
    mask = None
    if slots is not None:
        images = {k: read_image(item.frames[k]) for k in dict.fromkeys(slots)}
        frames = np.stack([images[k] for k in slots])
        if len(slots) == 1 and item.masks and item.masks[slots[0]] is not None:
            mask = read_mask(item.masks[slots[0]])
    return View(windows, frames, audio, mask, slots[0] if slots is not None and len(slots) == 1 else None)
