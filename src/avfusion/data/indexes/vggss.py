"""VGG-SS sound-source localisation test set (Chen et al., CVPR 2021; EZ-VSL release).

Expected layout::

    <root>/vggss.json             a JSON list of {"file": "<YTID>_<start:06d>", "class": label,
                                  "bbox": [[x0, y0, x1, y1], ...]} with corners normalised to [0, 1]
    media="frames" (default, the EZ-VSL release):
        <root>/frames/<file>.jpg and <root>/audio/<file>.wav
    media="clips" (read from a VGGSound tree at `root`, in either of its layouts, `layout=`):
        <root>/clips/<class folder>/<YTID>_<start:06d>_<start+10:06d>.mp4   or   <root>/video/<file>.mp4

The released file is read as the EZ-VSL evaluation reads it: every corner is clipped to [0, 1]; a
box left with no area (x1 <= x0 or y1 <= y0; the release has 12, each with one corner at about
-2.9e16) draws nothing and is dropped; an entry left with no box (`MKC9LvRivTM_000030`) stays, with
no boxes, and scores cIoU 0 (docs/protocols.md). Each of the three is counted in `Index.notes`.
The protocol then takes the union of the boxes. Classes: the unique classes of the file in
VGGSound folder order, or `classes=`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from avfusion.data.indexes.base import (Box, Index, Item, Notes, SplitBuilder, box_numbers, read_text, require_file,
                                         resolve, row_error)
from avfusion.data.indexes.vggsound import clip_path, folder_name, resolve_layout, vocabulary
from avfusion.errors import DataError


def read_entries(path: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise row_error(path, e.lineno, f"bad JSON ({e.msg})") from e
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of {{file, class, bbox}} objects")
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("file"), str) or not isinstance(e.get("class"), str) \
                or not isinstance(e.get("bbox"), list) or not e["bbox"]:
            raise DataError(f"{path}: entry {k} is not {{\"file\": str, \"class\": str, \"bbox\": [[x0, y0, x1, y1], ...]}}")
    return entries


def read_boxes(raw: list, where: str, notes: Notes) -> tuple[Box, ...]:
    """An entry's boxes as the EZ-VSL evaluation draws them: clipped to [0, 1], boxes with no area dropped."""
    boxes = []
    for box in raw:
        values = box_numbers(box, where)
        x0, y0, x1, y1 = clipped = tuple(min(max(v, 0.0), 1.0) for v in values)
        if clipped != values:
            notes.count("boxes with a corner outside [0, 1], clipped", example=where)
        if x1 <= x0 or y1 <= y0:
            notes.count("boxes with no area after clipping, dropped (they draw nothing)", example=where)
            continue
        boxes.append(clipped)
    if not boxes:
        notes.count("entries left with no box (kept; cIoU 0, as EZ-VSL scores them)", example=where)
    return tuple(boxes)


def load_vggss(root: str | Path, *, annotations: str | Path = "vggss.json", media: str = "frames",
               classes: Sequence[str] | str | Path | None = None, layout: str = "auto") -> Index:
    """Index of the VGG-SS test split; see the module docstring for the layout."""
    root = Path(root).expanduser()
    if media not in ("frames", "clips"):
        raise DataError(f"VGG-SS media must be 'frames' or 'clips', got {media!r}")
    layout = resolve_layout(root, layout) if media == "clips" else layout
    path = require_file(resolve(root, annotations), "VGG-SS annotations")
    entries = read_entries(path)
    names, by_folder = vocabulary([e["class"] for e in entries], classes, root)
    out, notes = SplitBuilder(path), Notes(path)
    for k, e in enumerate(entries):
        where = f"{path}: entry {k} ({e['file']})"
        if folder_name(e["class"]) not in by_folder:
            raise DataError(f"{where}: class {e['class']!r} is not in the given class list")
        boxes = read_boxes(e["bbox"], where, notes)
        fid = e["file"]
        fields: dict[str, Any] = {"frames": (root / "frames" / f"{fid}.jpg",), "audio": root / "audio" / f"{fid}.wav"}
        if media == "clips":
            ytid, _, start = fid.rpartition("_")
            if not ytid or not start.isdigit():
                raise DataError(f"{where}: file id is not <YTID>_<start:06d>")
            fields = {"media": (clip_path(root, ytid, int(start), e["class"], layout),)}
        out.add("test", Item(id=fid, labels=(by_folder[folder_name(e["class"])],), boxes=boxes,
                             extra={"label": e["class"]}, **fields), f"entry {k}")
    return Index("vggss", root, out.build(["test"]), names, notes=dict(notes))
