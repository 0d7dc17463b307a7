"""VGGSound (Chen et al., ICASSP 2020): 10 s YouTube clips, one label each.

Expected layouts (clips cut to 10 s)::

    <root>/annotations/vggsound.csv     rows `YTID,start,label,split`, no header; split is train or test;
                                        labels with commas are quoted ("playing violin, fiddle");
                                        `<root>/vggsound.csv` is read when annotations/ has none
    layout="folders" (the official DeepAVFusion layout, what `avfusion data prepare` writes):
    <root>/clips/<folder>/<YTID>_<start:06d>_<start+10:06d>.mp4
                                        folder = label with ' ', '(', ')' and ',' replaced by '_'
    layout="flat" (the Hugging Face mirror's shards, unpacked):
    <root>/video/<YTID>_<start:06d>.mp4

`layout="auto"` (default) takes "flat" when `<root>/video` is a folder and `<root>/clips` is not.

Classes are the unique labels of the csv (310 in the current file) ordered like their folder names,
which is the official `sorted(os.listdir(clips))` order the released classifier heads use. That order
differs from sorting the raw labels ('cattle, bovinae cowbell' comes before 'cattle mooing'); pass
`class_order="label"` for the raw order, or `classes=` (names or folder names, or a file) to pin a
vocabulary. Items: id `<YTID>_<start:06d>`, the whole clip (start/end None), `extra["yt_start"]` (the offset
in the YouTube video); the label name is `classes[labels[0]]`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from avfusion.data.indexes.base import (Index, Item, SplitBuilder, load_class_list, parse_whole_seconds,
                                         read_csv, require_file, resolve, row_error)
from avfusion.errors import DataError

SPLITS = ("train", "test")
CLIP_SECONDS = 10
LAYOUTS = ("auto", "folders", "flat")
ANNOTATIONS = ("annotations/vggsound.csv", "vggsound.csv")  # looked for in this order


def folder_name(label: str) -> str:
    """The clip folder of a label: ' ', '(', ')', ',' become '_' (the official naming)."""
    for ch in " (),":
        label = label.replace(ch, "_")
    return label


def clip_name(ytid: str, start: int, layout: str = "folders") -> str:
    """The clip's file name in `layout`: `<YTID>_<start:06d>.mp4` (flat) or with `_<start+10:06d>` (folders)."""
    if layout == "flat":
        return f"{ytid}_{start:06d}.mp4"
    return f"{ytid}_{start:06d}_{start + CLIP_SECONDS:06d}.mp4"


def clip_path(root: Path, ytid: str, start: int, label: str, layout: str = "folders") -> Path:
    """The clip file of (ytid, start) in `layout` ("folders" or "flat"; see the module docstring)."""
    folder = root / "video" if layout == "flat" else root / "clips" / folder_name(label)
    return folder / clip_name(ytid, start, layout)


def resolve_layout(root: Path, layout: str) -> str:
    """"folders" or "flat": `layout` itself, or the one found at `root` for "auto"."""
    if layout not in LAYOUTS:
        raise DataError(f"VGGSound layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "auto":
        return "flat" if (root / "video").is_dir() and not (root / "clips").is_dir() else "folders"
    return layout


def find_annotations(root: Path, annotations: str | Path | None) -> Path:
    """The given annotation file, or vggsound.csv under annotations/ or at the root."""
    if annotations is not None:
        return require_file(resolve(root, annotations), "VGGSound annotations")
    for candidate in ANNOTATIONS:
        if (root / candidate).is_file():
            return root / candidate
    raise DataError(f"VGGSound annotations: neither {root / ANNOTATIONS[0]} nor {root / ANNOTATIONS[1]} was found "
                    "(layouts: docs/datasets.md)")


def read_rows(path: Path) -> list[tuple[int, str, int, str, str]]:
    """(line, YTID, start, label, split) for every row of vggsound.csv."""
    rows = []
    for line, fields in read_csv(path):
        if len(fields) != 4:
            raise row_error(path, line, f"expected 4 fields YTID,start,label,split, got {len(fields)}")
        ytid, start, label, split = fields
        if not ytid or not label:
            raise row_error(path, line, "empty YouTube id or label")
        if split not in SPLITS:
            raise row_error(path, line, f"split {split!r} is not one of {SPLITS}")
        rows.append((line, ytid, parse_whole_seconds(start, path, line, "start"), label, split))
    return rows


def vocabulary(labels: Sequence[str], classes: Sequence[str] | str | Path | None, root: Path,
               class_order: str = "folder") -> tuple[tuple[str, ...], dict[str, int]]:
    """(class names, index by folder name) from the labels, or from an explicit list."""
    if classes is not None:
        names = load_class_list(classes, root)
    elif class_order == "folder":
        names = tuple(sorted(set(labels), key=folder_name))
    elif class_order == "label":
        names = tuple(sorted(set(labels)))
    else:
        raise DataError(f"class_order must be 'folder' or 'label', got {class_order!r}")
    by_folder: dict[str, int] = {}
    for i, name in enumerate(names):
        if by_folder.setdefault(folder_name(name), i) != i:
            raise DataError(f"classes {names[by_folder[folder_name(name)]]!r} and {name!r} share the "
                            f"clip folder {folder_name(name)!r}")
    return names, by_folder


def load_vggsound(root: str | Path, *, annotations: str | Path | None = None,
                  classes: Sequence[str] | str | Path | None = None, class_order: str = "folder",
                  layout: str = "auto") -> Index:
    """Index of VGGSound train/test clips; see the module docstring for the layouts."""
    root = Path(root).expanduser()
    layout = resolve_layout(root, layout)
    path = find_annotations(root, annotations)
    rows = read_rows(path)
    names, by_folder = vocabulary([r[3] for r in rows], classes, root, class_order)
    out = SplitBuilder(path)
    dirs: dict[str, Path] = {}  # one Path per class folder: joining per row dominates the parse time
    flat = root / "video"
    for line, ytid, start, label, split in rows:
        folder = folder_name(label)
        if folder not in by_folder:
            raise row_error(path, line, f"label {label!r} is not in the given class list")
        if folder not in dirs:
            dirs[folder] = root / "clips" / folder
        item = Item(id=f"{ytid}_{start:06d}",
                    media=((flat if layout == "flat" else dirs[folder]) / clip_name(ytid, start, layout),),
                    labels=(by_folder[folder],), extra={"yt_start": float(start)})
        out.add(split, item, line)
    return Index("vggsound", root, out.build(SPLITS), names)
