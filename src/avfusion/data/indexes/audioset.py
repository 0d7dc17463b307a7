"""AudioSet (Gemmeke et al., ICASSP 2017): 10 s YouTube segments with several labels each.

Expected layout (the official DeepAVFusion layout)::

    <root>/annotations/class_labels_indices.csv   header `index,mid,display_name`; index 0..526 in order
    <root>/annotations/balanced_train_segments.csv
    <root>/annotations/unbalanced_train_segments.csv
    <root>/annotations/eval_segments.csv          '#' comment lines (3 in the release), then rows
                                                  `YTID, start_seconds, end_seconds, "mid1,mid2,..."`
    <root>/clips/<YTID[:2]>/<YTID>_<int(start):06d>_<int(end):06d>.mp4

`pattern` (relative to root) changes the clip path; its fields are {ytid}, {prefix} (= YTID[:2]),
{start} and {end} (whole seconds, int), {split} (e.g. `"{split}/{ytid}_{start}.mp4"`). Splits are
named after the segment files; by default all three are required (pass `splits=` for fewer).
Items: id = YTID, the whole clip (start/end None), `extra["yt_start"]`, `extra["yt_end"]`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from avfusion.data.indexes.base import (Index, Item, SplitBuilder, parse_number, read_csv,
                                         require_file, resolve, row_error)
from avfusion.errors import ConfigError, DataError

SPLITS = ("balanced_train", "unbalanced_train", "eval")
DEFAULT_PATTERN = "clips/{prefix}/{ytid}_{start:06d}_{end:06d}.mp4"


def read_class_labels(path: Path) -> tuple[tuple[str, ...], dict[str, int]]:
    """(display names in index order, index by mid) from class_labels_indices.csv."""
    names: list[str] = []
    by_mid: dict[str, int] = {}
    for line, fields in read_csv(path):
        if not names and not by_mid and fields[:2] == ["index", "mid"]:
            continue  # header
        if len(fields) != 3:
            raise row_error(path, line, f"expected 3 fields index,mid,display_name, got {len(fields)}")
        index, mid, name = fields
        if index != str(len(names)):
            raise row_error(path, line, f"index {index!r} out of order (expected {len(names)})")
        if mid in by_mid:
            raise row_error(path, line, f"mid {mid!r} repeated")
        by_mid[mid] = len(names)
        names.append(name)
    if not names:
        raise DataError(f"{path}: no classes")
    return tuple(names), by_mid


def clip_path(root: Path, pattern: str, ytid: str, start: float, end: float, split: str,
              dirs: dict[str, Path] | None = None) -> Path:
    """The clip of a segment; `dirs` caches folder Paths (joining per row dominates the parse time)."""
    try:
        rel = pattern.format(ytid=ytid, prefix=ytid[:2], start=int(start), end=int(end), split=split)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"AudioSet clip pattern {pattern!r} is invalid ({e!r}); fields are "
                          "{ytid} {prefix} {start} {end} {split}") from e
    folder, _, name = rel.rpartition("/")
    dirs = {} if dirs is None else dirs
    if folder not in dirs:
        dirs[folder] = root / folder
    return dirs[folder] / name


def read_segments(path: Path, split: str, by_mid: dict[str, int], root: Path, pattern: str,
                  out: SplitBuilder) -> None:
    dirs: dict[str, Path] = {}
    for line, fields in read_csv(path, comment="#"):
        if len(fields) != 4:
            raise row_error(path, line, f"expected 4 fields YTID, start, end, \"labels\", got {len(fields)}")
        ytid, start_s, end_s, mids = fields
        start = parse_number(start_s, path, line, "start_seconds")
        end = parse_number(end_s, path, line, "end_seconds")
        if not ytid or not 0 <= start < end:
            raise row_error(path, line, f"bad segment {ytid!r} {start_s}..{end_s}")
        labels = []
        for mid in (m.strip() for m in mids.split(",")):
            if mid not in by_mid:
                raise row_error(path, line, f"label {mid!r} is not in class_labels_indices.csv")
            labels.append(by_mid[mid])
        item = Item(id=ytid, media=(clip_path(root, pattern, ytid, start, end, split, dirs),),
                    labels=tuple(labels), extra={"yt_start": start, "yt_end": end})
        out.add(split, item, line)


def load_audioset(root: str | Path, *, splits: Sequence[str] = SPLITS, annotations: str | Path = "annotations",
                  pattern: str = DEFAULT_PATTERN) -> Index:
    """Index of AudioSet segments; see the module docstring for the layout."""
    root = Path(root).expanduser()
    ann = resolve(root, annotations)
    names, by_mid = read_class_labels(require_file(ann / "class_labels_indices.csv", "AudioSet classes"))
    built: dict = {}
    for split in splits:
        path = require_file(ann / f"{split}_segments.csv", f"AudioSet split {split!r}")
        out = SplitBuilder(path)
        read_segments(path, split, by_mid, root, pattern, out)
        built[split] = out.build([split])[split]
    return Index("audioset", root, built, names, multilabel=True)
