"""What an index lists versus what is on disk: counts per split, and every failing item by name."""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from avfusion.errors import DecodeError

if TYPE_CHECKING:
    from avfusion.data.indexes.base import Index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitCounts:
    """listed = present + missing; unreadable (a subset of present) is None when not checked."""

    listed: int
    present: int
    missing: int
    unreadable: int | None = None

    @property
    def ok(self) -> int:
        return self.present - (self.unreadable or 0)


@dataclass(frozen=True)
class Problem:
    """One failing item: `kind` is 'missing' or 'unreadable'; `path` is the first failing file."""

    split: str
    item_id: str
    kind: str
    path: str
    reason: str


@dataclass
class Report:
    dataset: str
    root: str
    checked_readable: bool
    counts: dict[str, SplitCounts]
    problems: list[Problem] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)  # the index's counted deviations (`Index.notes`)

    @property
    def ok(self) -> bool:
        """True when no listed item is missing or unreadable."""
        return not self.problems

    def failed_ids(self, split: str) -> set[str]:
        return {p.item_id for p in self.problems if p.split == split}

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "root": self.root, "checked_readable": self.checked_readable,
                "counts": {s: asdict(c) for s, c in self.counts.items()},
                "problems": [asdict(p) for p in self.problems], "notes": dict(self.notes)}

    def summary(self, max_problems: int = 10) -> str:
        """A table of counts per split, then the first `max_problems` failing items."""
        how = "existence and readability" if self.checked_readable else "existence only"
        rows = [f"{self.dataset} at {self.root} ({how} checked)",
                f"{'split':<18}{'listed':>10}{'present':>10}{'missing':>10}{'unreadable':>12}"]
        for split, c in self.counts.items():
            unread = "-" if c.unreadable is None else str(c.unreadable)
            rows.append(f"{split:<18}{c.listed:>10}{c.present:>10}{c.missing:>10}{unread:>12}")
        if self.problems:
            rows.append(f"{len(self.problems)} failing items" +
                        (f", first {max_problems}:" if len(self.problems) > max_problems else ":"))
            rows += [f"  {p.split}/{p.item_id}: {p.kind} {p.path} ({p.reason})"
                     for p in self.problems[:max_problems]]
        else:
            rows.append("all listed items found" + (" and readable" if self.checked_readable else ""))
        rows += [f"note: {what}: {n}" for what, n in self.notes.items()]
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.summary()


def default_probe() -> Callable[[Path], Any]:
    from avfusion.media import probe  # lazy: the data package must import without the decoder

    return probe


def build_report(index: "Index", splits: Sequence[str] | None, *, check_readable: bool,
                 probe: Callable[[Path], Any] | None, progress: bool) -> Report:
    """Check every file of every item in `splits` (all by default); see `Index.report`."""
    from tqdm import tqdm

    names = list(index.splits) if splits is None else list(splits)
    for s in names:
        index[s]  # DataError for an unknown split
    if check_readable and probe is None:
        probe = default_probe()
    seen: dict[Path, str | None] = {}  # probe result per file: None readable, else the reason
    exists = _Presence()
    counts, problems = {}, []
    total = sum(len(index[s]) for s in names)
    bar = tqdm(total=total, desc=f"checking {index.name}", unit="item", disable=not progress)
    try:
        for split in names:
            missing = unreadable = 0
            for item in index[split]:
                problem = _check_item(item, split, probe if check_readable else None, seen, exists)
                bar.update(1)
                if problem is None:
                    continue
                problems.append(problem)
                if problem.kind == "missing":
                    missing += 1
                else:
                    unreadable += 1
            listed = len(index[split])
            counts[split] = SplitCounts(listed, listed - missing, missing,
                                        unreadable if check_readable else None)
    finally:
        bar.close()
    report = Report(index.name, str(index.root), check_readable, counts, problems, dict(index.notes))
    if problems:
        log.warning("%s: %d of %d listed items are missing or unreadable", index.name, len(problems), total)
    return report


class _Presence:
    """File existence by listing each folder once (one scandir per folder instead of a stat per file)."""

    def __init__(self) -> None:
        self._files: dict[Path, frozenset[str]] = {}

    def __call__(self, path: Path) -> bool:
        parent = path.parent
        names = self._files.get(parent)
        if names is None:
            try:
                with os.scandir(parent) as entries:
                    names = frozenset(e.name for e in entries if e.is_file())
            except OSError:  # absent or unlistable folder: its files count as missing
                names = frozenset()
            self._files[parent] = names
        return path.name in names


def _check_item(item, split: str, probe, seen: dict[Path, str | None], exists: _Presence) -> Problem | None:
    for path in item.files():
        if not exists(path):
            return Problem(split, item.id, "missing", str(path), "no such file")
    if probe is None:
        return None
    for path in item.decodable():
        if path not in seen:
            try:
                probe(path)
                seen[path] = None
            except DecodeError as e:
                seen[path] = e.reason
        if seen[path] is not None:
            return Problem(split, item.id, "unreadable", str(path), seen[path])
    return None
