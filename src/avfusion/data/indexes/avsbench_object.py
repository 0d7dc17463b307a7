"""AVSBench-object as first released (Single-source = S4, Multi-sources = MS3), with the folder names
of the official preprocessing scripts. `root` is the folder holding Single-source/ and Multi-sources/::

    Single-source/s4_meta_data.csv     a header naming `category` and `split`; the clip name comes first
    Single-source/s4_data/visual_frames/<split>/<category>/<name>/<name>_<i>.png   i = 1..5
    Single-source/s4_data/gt_masks/<split>/<category>/<name>/<name>_<i>.png        train: i = 1 only
    Single-source/s4_data/audio_wav/<split>/<category>/<name>.wav
    Multi-sources/ms3_meta_data.csv    a header naming `split`; the clip name comes first
    Multi-sources/ms3_data/visual_frames/<name>/<name>.mp4_<i>.png                 i = 1..5
    Multi-sources/ms3_data/gt_masks/<split>/<name>/<name>_<i>.png                  i = 1..5
    Multi-sources/ms3_data/audio_wav/<split>/<name>.wav

Masks are binary. S4 classes are the sorted categories (23); MS3 items carry no labels.
"""
from __future__ import annotations

from pathlib import Path

from avfusion.data.indexes.base import Index, Item, SplitBuilder, read_csv, require_file, row_error

SPLITS = ("train", "val", "test")


def _s4_item(data: Path, name: str, category: str, split: str, label: int) -> Item:
    frames = data / "visual_frames" / split / category / name
    masks = data / "gt_masks" / split / category / name
    return Item(id=name, frames=tuple(frames / f"{name}_{i}.png" for i in range(1, 6)),
                audio=data / "audio_wav" / split / category / f"{name}.wav",
                masks=tuple(masks / f"{name}_{i}.png" if (i == 1 or split != "train") else None for i in range(1, 6)),
                labels=(label,), extra={"category": category})


def _ms3_item(data: Path, name: str, split: str) -> Item:
    return Item(id=name, frames=tuple(data / "visual_frames" / name / f"{name}.mp4_{i}.png" for i in range(1, 6)),
                audio=data / "audio_wav" / split / f"{name}.wav",
                masks=tuple(data / "gt_masks" / split / name / f"{name}_{i}.png" for i in range(1, 6)))


def load_avsbench_object(root: str | Path, task: str) -> Index:
    """Index of S4 or MS3 in the AVSBench-object layout above."""
    root = Path(root).expanduser()
    folder, prefix = ("Single-source", "s4") if task == "s4" else ("Multi-sources", "ms3")
    path = require_file(root / folder / f"{prefix}_meta_data.csv", f"AVSBench-object {task.upper()} metadata")
    data = root / folder / f"{prefix}_data"
    (header_line, header), *rows = list(read_csv(path)) or [(1, [])]
    needed = ["category", "split"] if task == "s4" else ["split"]
    if any(c not in header for c in needed):
        raise row_error(path, header_line, f"header {header} lacks {needed}")
    cat, spl = (header.index("category") if task == "s4" else None), header.index("split")
    categories = sorted({f[cat] for _, f in rows if len(f) == len(header)}) if cat is not None else []
    out = SplitBuilder(path)
    for line, fields in rows:
        if len(fields) != len(header):
            raise row_error(path, line, f"{len(fields)} fields for {len(header)} columns")
        name, split = fields[0], fields[spl]
        if split not in SPLITS or not name:
            raise row_error(path, line, f"bad row: name {name!r}, split {split!r} (one of {SPLITS})")
        if cat is not None:
            item = _s4_item(data, name, fields[cat], split, categories.index(fields[cat]))
        else:
            item = _ms3_item(data, name, split)
        out.add(split, item, line)
    return Index(f"avsbench_{task}", root, out.build(SPLITS), tuple(categories))
