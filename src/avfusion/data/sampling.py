"""Which part of a clip a sample reads, and which clips a mixture combines.

Every random choice is drawn from a generator seeded by a hash of (seed, epoch, sample index, stream)
(`avfusion.randomness`, the one table of streams), never from global state, so a sample is the same whatever the number of workers or processes, and
an epoch can be replayed. Times are seconds on the file timeline; a span (lo, hi) is the part of the
file an item covers.

- training: `train_window` (start uniform over the span: temporal jitter), frame at the window centre;
- evaluation: `eval_window` (centred);
- dense evaluation: `dense_windows` (10 windows of 3 s spanning the central 10 s, the official
  fine-tuning protocol; logits are averaged per clip);
- still-frame items (frame k of n shows slot k of the span): `slot_window`;
- mixtures: `mixture_sources` (random partners for training), `fixed_mixtures` (a fixed list).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from avfusion.randomness import Stream, numpy_rng, seed_sequence, torch_generator

__all__ = ["Window", "Stream", "seed_sequence", "numpy_rng", "torch_generator", "train_window",
           "eval_window", "dense_windows", "slot_window", "choose_frame", "mixture_sources",
           "fixed_mixtures"]


@dataclass(frozen=True)
class Window:
    """Audio from `start` to `end` seconds; the image is the frame shown at `frame` seconds."""

    start: float
    end: float
    frame: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def _placed(lo: float, hi: float, window: float, start: float) -> Window:
    """A window of `window` s starting near `start`, kept inside [lo, hi] when it fits (else starting at lo).

    The frame is the centre of the part of the window that lies inside the span.
    """
    start = min(max(start, lo), max(lo, hi - window))
    end = start + window
    return Window(start, end, (start + min(end, hi)) / 2.0)


def _check_span(lo: float, hi: float, window: float) -> None:
    if not hi > lo:
        raise ValueError(f"empty span ({lo}, {hi})")
    if not window > 0:
        raise ValueError(f"window must be positive, got {window}")


def train_window(lo: float, hi: float, window: float, rng: np.random.Generator) -> Window:
    """A window whose start is uniform in [lo, hi - window] (temporal jitter); frame at its centre."""
    _check_span(lo, hi, window)
    return _placed(lo, hi, window, lo + rng.uniform(0.0, max(0.0, hi - lo - window)))


def eval_window(lo: float, hi: float, window: float) -> Window:
    """The window centred on the span (starting at lo when the span is shorter than the window)."""
    _check_span(lo, hi, window)
    return _placed(lo, hi, window, (lo + hi - window) / 2.0)


def dense_windows(lo: float, hi: float, window: float = 3.0, num: int = 10,
                  extent: float = 10.0) -> list[Window]:
    """`num` windows evenly spread over the central `extent` seconds of the span.

    The first starts where the central part starts and the last ends where it ends (for 10 windows
    of 3 s over 10 s, starts are 7/9 s apart). A shorter span shrinks the central part to the span.
    """
    _check_span(lo, hi, window)
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    centre = (lo + hi) / 2.0
    a, b = max(lo, centre - extent / 2.0), min(hi, centre + extent / 2.0)
    starts = np.linspace(a, max(a, b - window), num) if num > 1 else [(a + b - window) / 2.0]
    return [_placed(lo, hi, window, float(s)) for s in starts]


def slot_window(lo: float, hi: float, window: float, slot: int, num_slots: int,
                rng: np.random.Generator | None = None) -> Window:
    """The window for still frame `slot` of `num_slots` that show equal consecutive parts of the span.

    Evaluation (rng None): centred on the slot's centre; training: centred on a uniform time in the slot.
    """
    _check_span(lo, hi, window)
    if not 0 <= slot < num_slots:
        raise ValueError(f"slot {slot} outside 0..{num_slots - 1}")
    width = (hi - lo) / num_slots
    u = 0.5 if rng is None else rng.uniform()
    centre = lo + (slot + u) * width
    w = _placed(lo, hi, window, centre - window / 2.0)
    return Window(w.start, w.end, centre)


def choose_frame(num_frames: int, annotated: Sequence[bool] | None = None,
                 rng: np.random.Generator | None = None) -> int:
    """Which still frame to use: random (training) or the middle one (rng None), among annotated frames
    when any frame is annotated."""
    if num_frames < 1:
        raise ValueError("an item needs at least one frame")
    pool = [k for k in range(num_frames) if annotated and annotated[k]] or list(range(num_frames))
    return pool[int(rng.integers(len(pool)))] if rng is not None else pool[(len(pool) - 1) // 2]


def mixture_sources(index: int, num_items: int, num_sources: int, rng: np.random.Generator,
                    labels: Sequence[Sequence[int]] | None = None, tries: int = 20) -> tuple[int, ...]:
    """(index, partner, ...): `num_sources` distinct items, the first being `index`.

    With `labels` (the label indices of every item), each partner shares no label with the items
    already chosen when such a partner is found in `tries` draws; otherwise any distinct item.
    """
    if not 2 <= num_sources <= num_items:
        raise ValueError(f"a mixture of {num_sources} sources needs 2 <= num_sources <= {num_items} items")
    chosen = [int(index)]
    taken: set[int] = set(labels[index]) if labels is not None else set()
    while len(chosen) < num_sources:
        pick = None
        for _ in range(tries):
            j = int(rng.integers(num_items))
            if j not in chosen and (labels is None or not taken.intersection(labels[j])):
                pick = j
                break
        if pick is None:
            rest = [j for j in range(num_items) if j not in chosen]
            pick = rest[int(rng.integers(len(rest)))]
        chosen.append(pick)
        if labels is not None:
            taken.update(labels[pick])
    return tuple(chosen)


def fixed_mixtures(num_items: int, num_sources: int, seed: int, count: int | None = None,
                   labels: Sequence[Sequence[int]] | None = None) -> list[tuple[int, ...]]:
    """A fixed evaluation list: mixture k combines item k % num_items with partners drawn from
    (seed, k) only, so the list is the same in every epoch, run and process."""
    count = num_items if count is None else int(count)
    return [mixture_sources(k % num_items, num_items, num_sources,
                            numpy_rng(seed, 0, k, Stream.FIXED), labels) for k in range(count)]
