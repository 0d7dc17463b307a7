"""Flickr-SoundNet sound-source localisation test set (Senocak et al., CVPR 2018; LVS/EZ-VSL release).

Expected layout::

    <root>/flickr_test.csv        the test list: one clip id per line as the first field (the LVS/EZ-VSL
                                  `metadata/flickr_test.csv`; further fields are kept in extra["list"])
    <root>/frames/<id>.jpg        the annotated frame (256x256)
    <root>/audio/<id>.wav
    <root>/Annotations/<id>.xml   VOC-like boxes on the 256x256 frame

XML read: every `bbox` or `bndbox` element, at any depth. Its corners are the children named
xmin/ymin/xmax/ymax; without names, the last four children in that order (the official parser skips
the first child). Annotators: boxes whose enclosing <object> has an <annotator> child (or an
`annotator` attribute on the object or box) with the same text are one annotator's; a box without
one is its own annotator (the common release puts each annotator's box in its own <object>).
Boxes are divided by `frame_size` (256), always, as the official evaluation does. A missing XML
counts the item missing (like its frame or audio); a malformed one is a DataError.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from avfusion.data.indexes.base import (Index, Item, SplitBuilder, check_box, read_csv, require_file,
                                         resolve, row_error)
from avfusion.errors import DataError

CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _corners(box: ET.Element, path: Path) -> list[float]:
    children = list(box)
    named = {c.tag.lower(): c.text for c in children}
    texts = [named[k] for k in CORNERS] if all(k in named for k in CORNERS) else [c.text for c in children[-4:]]
    if len(texts) != 4:
        raise DataError(f"{path}: <{box.tag}> has {len(children)} children, expected xmin, ymin, xmax, ymax")
    try:
        return [float((t or "").strip()) for t in texts]
    except ValueError:
        raise DataError(f"{path}: <{box.tag}> corners {texts} are not numbers") from None


def read_boxes(path: Path, frame_size: float = 256.0) -> tuple[tuple, tuple[int, ...]]:
    """(normalised boxes, annotator per box) from one annotation XML."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}, line {e.position[0]}: malformed XML ({e})") from e
    boxes, annotators, groups = [], [], {}
    parents = {child: parent for parent in root.iter() for child in parent}
    for box in root.iter():
        if box.tag.lower() not in ("bbox", "bndbox"):
            continue
        x0, y0, x1, y1 = _corners(box, path)
        boxes.append(check_box([x0 / frame_size, y0 / frame_size, x1 / frame_size, y1 / frame_size],
                               f"{path} (box {x0, y0, x1, y1} on a {frame_size:g}px frame)"))
        obj = parents.get(box)
        key = box.get("annotator") or (obj is not None and (obj.get("annotator") or obj.findtext("annotator")))
        key = key.strip() if isinstance(key, str) and key.strip() else f"#box{len(boxes)}"
        annotators.append(groups.setdefault(key, len(groups)))
    if not boxes:
        raise DataError(f"{path}: no <bbox> or <bndbox> element")
    return tuple(boxes), tuple(annotators)


def load_flickr(root: str | Path, *, test_list: str | Path = "flickr_test.csv", frame_size: float = 256.0) -> Index:
    """Index of the Flickr-SoundNet test split; see the module docstring for the layout."""
    root = Path(root).expanduser()
    listing = require_file(resolve(root, test_list), "Flickr-SoundNet test list")
    out = SplitBuilder(listing)
    for line, fields in read_csv(listing):
        vid = fields[0]
        if not vid:
            raise row_error(listing, line, "empty clip id")
        xml = root / "Annotations" / f"{vid}.xml"
        boxes, who = read_boxes(xml, frame_size) if xml.is_file() else ((), ())
        out.add("test", Item(id=vid, frames=(root / "frames" / f"{vid}.jpg",), audio=root / "audio" / f"{vid}.wav",
                             boxes=boxes, box_annotators=who, annotation=xml,
                             extra={"list": tuple(fields[1:]), "frame_size": frame_size}), line)
    return Index("flickr", root, out.build(["test"]))
