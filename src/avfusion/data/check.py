"""Decode every listed item of an index the way training reads it, and say which ones fail and why.

Per item one status, the first that applies:
`missing` (a listed file is absent), `unreadable` (a file does not decode: damaged, truncated,
not media), `no_audio` (no audio stream and no audio file), `silent_audio` (peak below -80 dBFS
over the evaluation window), `frozen_video` (three frames across the clip are identical), `ok`.
Every failing item is named with the file at fault and the reason. Missing and unreadable files are
errors for every dataset; silent audio and frozen video may be legitimate for some (`ignore`).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from avfusion.data.indexes import Index, Item
from avfusion.media import open_clip, read_image, read_mask
from avfusion.data.sampling import eval_window
from avfusion.errors import DecodeError

log = logging.getLogger(__name__)

__all__ = ["STATUSES", "ItemResult", "CheckReport", "check_item", "check_index"]

STATUSES = ("ok", "missing", "unreadable", "no_audio", "silent_audio", "frozen_video")
SILENCE_PEAK = 1e-4          # -80 dBFS
FROZEN_MEAN_DIFF = 0.5       # mean absolute difference (0..255) under which two frames are the same


@dataclass(frozen=True)
class ItemResult:
    split: str
    id: str
    status: str
    path: str = ""
    reason: str = ""


@dataclass
class CheckReport:
    dataset: str
    root: str
    window: float
    frame_mode: str
    results: list[ItemResult] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)  # the index's counted deviations (`Index.notes`)

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {status: count}} with every status present."""
        out: dict[str, dict[str, int]] = {}
        for r in self.results:
            out.setdefault(r.split, dict.fromkeys(STATUSES, 0))[r.status] += 1
        return out

    def failed(self, ignore: Iterable[str] = ()) -> list[ItemResult]:
        """Items whose status is neither ok nor in `ignore`."""
        skip = {"ok", *ignore}
        return [r for r in self.results if r.status not in skip]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "root": self.root, "window": self.window,
                "frame_mode": self.frame_mode, "counts": self.counts(),
                "items": [asdict(r) for r in self.results], "notes": dict(self.notes)}

    def summary(self, max_items: int = 20) -> str:
        rows = [f"{self.dataset} at {self.root}",
                f"{'split':<16}" + "".join(f"{s:>14}" for s in STATUSES)]
        for split, c in self.counts().items():
            rows.append(f"{split:<16}" + "".join(f"{c[s]:>14}" for s in STATUSES))
        bad = self.failed()
        if bad:
            more = f", first {max_items}" if len(bad) > max_items else ""
            rows.append(f"{len(bad)} items not ok{more}:")
            rows += [f"  {r.split}/{r.id}: {r.status} {r.path} ({r.reason})" for r in bad[:max_items]]
        else:
            rows.append("every item decoded")
        rows += [f"note: {what}: {n}" for what, n in self.notes.items()]
        return "\n".join(rows)


def _frozen(frames: np.ndarray) -> bool:
    f = frames.astype(np.int16)
    return all(np.abs(f[k] - f[0]).mean() < FROZEN_MEAN_DIFF for k in range(1, len(f)))


def _check_container(path, has_own_audio: bool, window: float, frame_mode: str, span) -> tuple[str, str]:
    """(status, reason) of one media file, decoded as a sample would be."""
    with open_clip(path) as clip:
        lo = span[0] if span[0] is not None else 0.0
        hi = span[1] if span[1] is not None else clip.duration
        if not hi > lo:
            return "unreadable", f"empty span ({lo}, {hi}) s"
        frozen = False
        if clip.has_video:
            times = [lo + (hi - lo) * q for q in (0.1, 0.5, 0.9)]
            frozen = _frozen(clip.frames(times, frame_mode))
        if not has_own_audio:
            if not clip.has_audio:
                return "no_audio", "no audio stream"
            w = eval_window(lo, hi, window)
            audio = clip.audio(w.start, min(w.end, hi))
            if float(np.abs(audio).max(initial=0.0)) < SILENCE_PEAK:
                return "silent_audio", f"peak below {SILENCE_PEAK:g} in {w.start:.2f}-{min(w.end, hi):.2f} s"
        if frozen:
            return "frozen_video", "frames at 10%, 50% and 90% of the clip are identical"
    return "ok", ""


def check_item(item: Item, split: str = "", *, window: float = 3.0, frame_mode: str = "exact") -> ItemResult:
    """Decode everything `item` needs (media, audio window, frames, masks) and classify it."""
    for path in item.files():
        if not path.is_file():
            return ItemResult(split, item.id, "missing", str(path), "no such file")
    current = ""
    try:
        for path in item.frames:
            current = str(path)
            read_image(path)
        for path in item.masks:
            if path is not None:
                current = str(path)
                read_mask(path)
        for path in item.media:
            current = str(path)
            status, reason = _check_container(path, item.audio is not None, window, frame_mode, (item.start, item.end))
            if status != "ok":
                return ItemResult(split, item.id, status, current, reason)
        if item.audio is not None:
            current = str(item.audio)
            status, reason = _check_container(item.audio, False, window, frame_mode, (item.start, item.end))
            if status != "ok":
                return ItemResult(split, item.id, status, current, reason)
    except DecodeError as e:
        status = "no_audio" if e.reason == "no audio stream" else "unreadable"
        return ItemResult(split, item.id, status, e.path or current, e.reason)
    return ItemResult(split, item.id, "ok")


def _check_job(job: tuple[Item, str, float, str]) -> ItemResult:
    item, split, window, frame_mode = job
    return check_item(item, split, window=window, frame_mode=frame_mode)


def check_index(index: Index, splits: Sequence[str] | None = None, *, window: float = 3.0,
                frame_mode: str = "exact", workers: int = 0, progress: bool = True) -> CheckReport:
    """Check every item of `splits` (all by default) with a progress bar; `workers` > 0 uses processes."""
    from tqdm import tqdm

    names = list(index.splits) if splits is None else list(splits)
    jobs = [(item, s, window, frame_mode) for s in names for item in index[s]]
    report = CheckReport(index.name, str(index.root), window, frame_mode, notes=dict(index.notes))
    bar = tqdm(total=len(jobs), desc=f"checking {index.name}", unit="item", disable=not progress)
    try:
        if workers > 0:
            import multiprocessing as mp
            with mp.get_context("spawn").Pool(workers) as pool:
                for result in pool.imap(_check_job, jobs, chunksize=4):
                    report.results.append(result)
                    bar.update(1)
        else:
            for job in jobs:
                report.results.append(_check_job(job))
                bar.update(1)
    finally:
        bar.close()
    tally = Counter(r.status for r in report.results)
    if tally["ok"] < len(report.results):
        log.warning("%s: %d of %d items are not ok: %s", index.name, len(report.results) - tally["ok"],
                    len(report.results), dict((k, v) for k, v in tally.items() if k != "ok"))
    return report
