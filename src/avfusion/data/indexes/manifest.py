"""A manifest for your own data: a CSV file (with a header) or JSON Lines, one item per row.

Columns (JSON keys):

    media    required; path of a video, audio or image file, relative to the manifest's folder
    id       optional; default `media`, plus `@<start>-<end>` when a window is given
    split    optional; default "all"
    start, end   optional; seconds inside the media file
    labels   optional; class names, ';'-separated in CSV, a list or ';'-separated string in JSONL
    boxes    optional; JSON list of [x0, y0, x1, y1] normalised to [0, 1]
    mask     optional; path of a mask image, relative to the manifest's folder
    audio    optional; a separate audio file for an image `media`

Image media (.jpg .jpeg .png .bmp .webp) go to `Item.frames`, others to `Item.media`. Other columns
are kept in `extra` (and named once in the log). Classes: sorted label names, or `classes=` (a list,
or a file: .json list or one name per line), in which case every label must be in it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

from avfusion.data.indexes.base import (Index, Item, SplitBuilder, check_box, load_class_list, parse_number,
                                         read_csv, read_text, row_error)
from avfusion.errors import DataError

log = logging.getLogger(__name__)

COLUMNS = ("media", "id", "split", "start", "end", "labels", "boxes", "mask", "audio")
IMAGES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() == ".csv":
        rows = read_csv(path)
        _, header = next(rows, (1, []))
        if "media" not in header:
            raise row_error(path, 1, f"header {header} has no 'media' column")
        for line, fields in rows:
            if len(fields) != len(header):
                raise row_error(path, line, f"{len(fields)} fields for {len(header)} columns")
            yield line, {k: v for k, v in zip(header, fields) if v != ""}
        return
    for line, text in enumerate(read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise row_error(path, line, f"bad JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise row_error(path, line, "expected a JSON object")
        yield line, {k: v for k, v in row.items() if v not in (None, "")}


def _labels(value: Any, path: Path, line: int) -> list[str]:
    names = value.split(";") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise row_error(path, line, f"labels {value!r} are not names")
    return [n.strip() for n in names if n.strip()]


def _boxes(value: Any, path: Path, line: int) -> tuple:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise row_error(path, line, f"boxes are not JSON ({e.msg})") from e
    if not isinstance(value, list):
        raise row_error(path, line, "boxes are not a list of [x0, y0, x1, y1]")
    return tuple(check_box(b, f"{path}, line {line}") for b in value)


def _seconds(row: dict, key: str, path: Path, line: int) -> float | None:
    if key not in row:
        return None
    value = row[key]
    value = parse_number(value, path, line, key) if isinstance(value, str) else value
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise row_error(path, line, f"{key} {row[key]!r} is not a non-negative number of seconds")
    return float(value)


def find_manifest(root: Path) -> Path:
    if root.is_file():
        return root
    found = [root / n for n in ("manifest.csv", "manifest.jsonl") if (root / n).is_file()]
    if len(found) != 1:
        raise DataError(f"manifest: expected {root} to be a manifest file, or a folder holding exactly one of "
                        f"manifest.csv / manifest.jsonl (found {len(found)})")
    return found[0]


def load_manifest(root: str | Path, *, classes: Sequence[str] | str | Path | None = None,
                  multilabel: bool | None = None) -> Index:
    """Index of a user manifest; `root` is the manifest file or a folder holding one.

    `multilabel` defaults to whether any row has more than one label.
    """
    path = find_manifest(Path(root).expanduser())
    base = path.parent
    parsed, unknown = [], set()
    for line, row in _rows(path):
        if not isinstance(row.get("media"), str):
            raise row_error(path, line, "no media path")
        bad = [k for k in ("mask", "audio", "split") if k in row and not isinstance(row[k], str)]
        if bad or ("id" in row and not isinstance(row["id"], (str, int))):
            raise row_error(path, line, f"{bad or ['id']} must be text")
        start, end = _seconds(row, "start", path, line), _seconds(row, "end", path, line)
        if start is not None and end is not None and end <= start:
            raise row_error(path, line, f"end {end} is not after start {start}")
        unknown |= set(row) - set(COLUMNS)
        parsed.append((line, row, start, end, _labels(row.get("labels", []), path, line)))
    if unknown:
        log.info("%s: columns %s are kept in Item.extra", path, sorted(unknown))
    names = load_class_list(classes, base) if classes is not None else \
        tuple(sorted({n for *_, labels in parsed for n in labels}))
    index = {n: i for i, n in enumerate(names)}
    out = SplitBuilder(path)
    for line, row, start, end, labels in parsed:
        if any(n not in index for n in labels):
            raise row_error(path, line, f"labels {[n for n in labels if n not in index]} are not in the class list")
        media = base / row["media"]
        window = f"@{start if start is not None else ''}-{end if end is not None else ''}" \
            if start is not None or end is not None else ""
        is_image = media.suffix.lower() in IMAGES
        item = Item(id=str(row.get("id", f"{row['media']}{window}")),
                    media=() if is_image else (media,), frames=(media,) if is_image else (),
                    audio=base / row["audio"] if "audio" in row else None, start=start, end=end,
                    labels=tuple(index[n] for n in labels), boxes=_boxes(row.get("boxes", []), path, line),
                    masks=(base / row["mask"],) if "mask" in row else (),
                    extra={k: row[k] for k in row if k not in COLUMNS})
        out.add(str(row.get("split", "all")), item, line)
    return Index("manifest", path, out.build(), names, 
                 multilabel=any(len(p[-1]) > 1 for p in parsed) if multilabel is None else multilabel)
