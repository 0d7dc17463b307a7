"""Index primitives: an `Item` per listed sample, an `Index` of items per split, and parsing helpers.

Every path in an item is absolute. `start`/`end` are seconds inside the media file (None: the whole
file); offsets in the original YouTube video, when a dataset has them, sit in `extra`. Boxes are
(x0, y0, x1, y1) normalised to [0, 1] of the frame they were drawn on.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from avfusion.errors import DataError

if TYPE_CHECKING:
    from avfusion.data.indexes.report import Report

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Item:
    """One listed sample and every file it needs."""

    id: str
    media: tuple[Path, ...] = ()  # containers read with PyAV (video and/or audio); two for a separation pair
    frames: tuple[Path, ...] = ()  # still images (Flickr frame, AVSBench frames)
    audio: Path | None = None  # a separate audio file, when the sound is not inside `media`
    start: float | None = None
    end: float | None = None
    labels: tuple[int, ...] = ()  # class indices into Index.classes
    boxes: tuple[Box, ...] = ()
    box_annotators: tuple[int, ...] = ()  # annotator of each box, parallel to `boxes`; empty: one annotator
    masks: tuple[Path | None, ...] = ()  # one per frame; None where that frame has no annotation
    annotation: Path | None = None  # the annotation file this item was read from, if it has its own
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def decodable(self) -> tuple[Path, ...]:
        """Files decoded at load time (media, audio, frames, masks), in that order, without repeats."""
        paths = [*self.media, *([self.audio] if self.audio else []), *self.frames,
                 *(m for m in self.masks if m is not None)]
        return tuple(dict.fromkeys(paths))

    def files(self) -> tuple[Path, ...]:
        """Every file the item needs: `decodable()` plus its annotation file."""
        extra = (self.annotation,) if self.annotation is not None else ()
        return tuple(dict.fromkeys((*self.decodable(), *extra)))

    def boxes_by_annotator(self) -> list[list[Box]]:
        """Boxes grouped per annotator, in order of first appearance."""
        if not self.box_annotators:
            return [list(self.boxes)] if self.boxes else []
        groups: dict[int, list[Box]] = {}
        for box, who in zip(self.boxes, self.box_annotators):
            groups.setdefault(who, []).append(box)
        return list(groups.values())


@dataclass(frozen=True)
class Index:
    """Items per split of one dataset, with its class vocabulary."""

    name: str
    root: Path
    splits: Mapping[str, tuple[Item, ...]]
    classes: tuple[str, ...] = ()
    multilabel: bool = False
    dropped: Mapping[str, int] = field(default_factory=dict)  # items removed by `without_failed`, per split
    # Counted deviations of the released files from their documented format, each handled as the files'
    # own peers handle it (e.g. "boxes clipped to [0, 1]": 12); shown by `summary()` and `report()`.
    notes: Mapping[str, int] = field(default_factory=dict)

    def __getitem__(self, split: str) -> tuple[Item, ...]:
        if split not in self.splits:
            raise DataError(f"{self.name}: no split {split!r}; this index has {sorted(self.splits)}")
        return self.splits[split]

    def __len__(self) -> int:
        return sum(len(items) for items in self.splits.values())

    def report(self, splits: Sequence[str] | None = None, *, check_readable: bool = False,
               probe: Callable[[Path], Any] | None = None, progress: bool = True) -> "Report":
        """Count listed / present / missing (/ unreadable with `check_readable`) items per split.

        Readability calls `probe(path)` (default `avfusion.media.probe`) on every decodable file and
        counts an item unreadable when it raises `DecodeError`.
        """
        from avfusion.data.indexes.report import build_report

        return build_report(self, splits, check_readable=check_readable, probe=probe, progress=progress)

    def without_failed(self, report: "Report") -> "Index":
        """A copy without the items `report` found missing or unreadable; the counts go to `dropped`."""
        splits, dropped = {}, dict(self.dropped)
        for split, items in self.splits.items():
            bad = report.failed_ids(split)
            kept = tuple(it for it in items if it.id not in bad)
            splits[split] = kept
            if len(kept) < len(items):
                dropped[split] = dropped.get(split, 0) + len(items) - len(kept)
                log.warning("%s/%s: skipping %d of %d items (missing or unreadable)",
                            self.name, split, len(items) - len(kept), len(items))
        return replace(self, splits=splits, dropped=dropped)

    def summary(self) -> str:
        """One line: name, classes and item counts per split."""
        parts = ", ".join(f"{s} {len(v)}" for s, v in self.splits.items())
        drop = f"; dropped {dict(self.dropped)}" if self.dropped else ""
        notes = "".join(f"\n  note: {what}: {n}" for what, n in self.notes.items())
        return f"{self.name} at {self.root}: {len(self.classes)} classes; {parts} items{drop}{notes}"

    def __str__(self) -> str:
        return self.summary()


class Notes(dict):
    """Counts of the deviations an index met while reading `source`; each is logged once, when counted."""

    def __init__(self, source: Path):
        super().__init__()
        self.source = source

    def count(self, what: str, n: int = 1, example: str = "") -> None:
        """Add `n` to the count of `what`; the first occurrence is logged with `example` (e.g. the entry)."""
        if n <= 0:
            return
        if what not in self:
            log.warning("%s: %s%s (counted in Index.notes)", self.source, what, f", e.g. {example}" if example else "")
        self[what] = self.get(what, 0) + n


class SplitBuilder:
    """Collects items per split while parsing `source`; a repeated id is a DataError naming both lines."""

    def __init__(self, source: Path):
        self.source = source
        self._items: dict[str, list[Item]] = {}
        self._where: dict[tuple[str, str], Any] = {}

    def add(self, split: str, item: Item, where: Any) -> None:
        key = (split, item.id)
        if key in self._where:
            raise DataError(f"{self.source}: item {item.id!r} of split {split!r} is listed twice "
                            f"({_loc(self._where[key])} and {_loc(where)})")
        self._where[key] = where
        self._items.setdefault(split, []).append(item)

    def build(self, order: Sequence[str] = ()) -> dict[str, tuple[Item, ...]]:
        """Splits in `order` first (present even when empty), then the others as first seen."""
        names = list(order) + [s for s in self._items if s not in order]
        return {s: tuple(self._items.get(s, ())) for s in names}


def _loc(where: Any) -> str:
    return f"line {where}" if isinstance(where, int) else str(where)


def row_error(path: Path, line: int, message: str) -> DataError:
    """A DataError naming the file and line of a malformed row."""
    return DataError(f"{path}, line {line}: {message}")


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file, else a DataError naming the expected file."""
    if not path.is_file():
        raise DataError(f"{what}: expected file {path} was not found (layouts: docs/datasets.md)")
    return path


def resolve(root: Path, path: str | Path) -> Path:
    """`path` as given when absolute, else relative to `root`."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def read_text(path: Path) -> str:
    """The file as UTF-8 text (a BOM is dropped); undecodable bytes are a DataError."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def read_csv(path: Path, *, comment: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank row; rows starting with `comment` are skipped.

    Spaces after delimiters are ignored (AudioSet writes `a, b, "c,d"`).
    """
    current = [0]

    def lines() -> Iterator[str]:
        for number, line in enumerate(read_text(path).splitlines(keepends=True), start=1):
            if line.strip() and not (comment and line.lstrip().startswith(comment)):
                current[0] = number
                yield line

    reader = csv.reader(lines(), skipinitialspace=True, strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise row_error(path, current[0], f"bad CSV ({e})") from e
        yield current[0], [f.strip() for f in row]


def parse_number(text: str, path: Path, line: int, what: str) -> float:
    """A float from a field, or a DataError naming the field."""
    try:
        value = float(text)
    except ValueError:
        raise row_error(path, line, f"{what} {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise row_error(path, line, f"{what} {text!r} is not finite")
    return value


def parse_whole_seconds(text: str, path: Path, line: int, what: str) -> int:
    """A non-negative whole number of seconds ('30' or '30.000')."""
    value = parse_number(text, path, line, what)
    if value < 0 or value != int(value):
        raise row_error(path, line, f"{what} {text!r} is not a whole non-negative number of seconds")
    return int(value)


def box_numbers(box: Any, where: str) -> Box:
    """Four numbers (x0, y0, x1, y1) as floats, or a DataError naming `where`."""
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        raise DataError(f"{where}: box {box!r} is not four numbers [x0, y0, x1, y1]")
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0, y0, x1, y1)


def check_box(box: Any, where: str) -> Box:
    """A normalised (x0, y0, x1, y1) box with 0 <= x0 <= x1 <= 1 (same for y), or a DataError."""
    x0, y0, x1, y1 = box_numbers(box, where)
    if not (0.0 <= x0 <= x1 <= 1.0 and 0.0 <= y0 <= y1 <= 1.0):
        raise DataError(f"{where}: box {box!r} is not normalised with x0 <= x1 and y0 <= y1 in [0, 1]")
    return (x0, y0, x1, y1)


def load_class_list(classes: Sequence[str] | str | Path, root: Path) -> tuple[str, ...]:
    """An explicit vocabulary: a sequence of names, or a file (.json list, else one name per line)."""
    if isinstance(classes, (str, Path)):
        import json

        path = require_file(resolve(root, classes), "class list")
        text = read_text(path)
        if path.suffix == ".json":
            try:
                names = json.loads(text)
            except json.JSONDecodeError as e:
                raise row_error(path, e.lineno, f"bad JSON ({e.msg})") from e
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DataError(f"{path}: expected a JSON list of class names")
        else:
            names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    else:
        names = list(classes)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"class list repeats {dup[:5]}")
    if not names:
        raise DataError("class list is empty")
    return tuple(names)
