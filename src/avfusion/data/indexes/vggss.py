"""VGG-SS sound-source localisation test set (Chen et al., CVPR 2021; EZ-VSL release).

Expected layout::

    <root>/vggss.json             a JSON list of {"file": "<YTID>_<start:06d>", "class": label,
                                  "bbox": [[x0, y0, x1, y1], ...]} with corners normalised to [0, 1]
    media="frames" (default, the EZ-VSL release):
        <root>/frames/<file>.jpg and <root>/audio/<file>.wav
    media="clips" (read from a VGGSound tree at `root`):
        <root>/clips/<class folder>/<YTID>_<start:06d>_<start+10:06d>.mp4

Corners slightly outside [0, 1] are clipped, as the official evaluation does, and the number of
clipped boxes is logged; the protocol then takes the union of the boxes (see docs/protocols.md).
Classes: the unique classes of the file in VGGSound folder order, or `classes=`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

from avfusion.data.indexes.base import Index, Item, SplitBuilder, check_box, read_text, require_file, resolve, row_error
from avfusion.data.indexes.vggsound import clip_path, folder_name, vocabulary
from avfusion.errors import DataError

log = logging.getLogger(__name__)


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


def _clip(box: Any) -> tuple[Any, bool]:
    if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        clipped = [min(max(float(v), 0.0), 1.0) for v in box]
        return clipped, clipped != [float(v) for v in box]
    return box, False


def load_vggss(root: str | Path, *, annotations: str | Path = "vggss.json", media: str = "frames",
               classes: Sequence[str] | str | Path | None = None) -> Index:
    """Index of the VGG-SS test split; see the module docstring for the layout."""
    root = Path(root).expanduser()
    if media not in ("frames", "clips"):
        raise DataError(f"VGG-SS media must be 'frames' or 'clips', got {media!r}")
    path = require_file(resolve(root, annotations), "VGG-SS annotations")
    entries = read_entries(path)
    names, by_folder = vocabulary([e["class"] for e in entries], classes, root)
    out, n_clipped = SplitBuilder(path), 0
    for k, e in enumerate(entries):
        where = f"{path}: entry {k} ({e['file']})"
        if folder_name(e["class"]) not in by_folder:
            raise DataError(f"{where}: class {e['class']!r} is not in the given class list")
        boxes = []
        for box in e["bbox"]:
            box, clipped = _clip(box)
            n_clipped += clipped
            boxes.append(check_box(box, where))
        fid = e["file"]
        fields: dict[str, Any] = {"frames": (root / "frames" / f"{fid}.jpg",), "audio": root / "audio" / f"{fid}.wav"}
        if media == "clips":
            ytid, _, start = fid.rpartition("_")
            if not ytid or not start.isdigit():
                raise DataError(f"{where}: file id is not <YTID>_<start:06d>")
            fields = {"media": (clip_path(root, ytid, int(start), e["class"]),)}
        out.add("test", Item(id=fid, labels=(by_folder[folder_name(e["class"])],), boxes=tuple(boxes),
                             extra={"label": e["class"]}, **fields), f"entry {k}")
    if n_clipped:
        log.info("%s: clipped %d box(es) to [0, 1] as the official evaluation does", path, n_clipped)
    return Index("vggss", root, out.build(["test"]), names)
