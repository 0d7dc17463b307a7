"""AVSBench audio-visual segmentation (Zhou et al., ECCV 2022; AVSBench-semantic, 2023): S4, MS3, AVSS.

Expected layout, `layout="semantic"` (the unified AVSBench-semantic release, as DeepAVFusion uses it)::

    <root>/metadata.csv    a header naming at least uid, split (train/val/test) and label (the subset:
                           v1s = S4, v1m = MS3, v2 = new AVSS clips); a_obj ('_'-separated class names,
                           'off-the-screen' read as background) and vid are used when present. The release
                           has `vid,uid,s_min,s_sec,a_obj,split,label`.
    <root>/label2idx.json  {class name: index}: the release numbers its 71 classes 1..71 ("background": 1);
                           0..70 is read too. The class axis is always 0-based (index = value - 1 for
                           the release: background is class 0, the value its masks' pixels hold)
    <root>/<label>/<uid>/audio.wav
    <root>/<label>/<uid>/frames/<i>.jpg              i = 0..4 (v1s, v1m) or 0..9 (v2)
    <root>/<label>/<uid>/labels_semantic/<i>.png     per-pixel class indices (`mask_dir="labels_rgb"`
                                                     for the colour masks)

Tasks: "s4" lists v1s rows, "ms3" v1m rows, "avss" all three subsets. S4 train clips have only
their first frame annotated: their other masks are None. Classes come from label2idx.json.
The original AVSBench-object folders (Single-source/, Multi-sources/) are read with
`layout="object"`, see `avsbench_object`.
"""
from __future__ import annotations

import json
from pathlib import Path

from avfusion.data.indexes.base import Index, Item, Notes, SplitBuilder, read_csv, read_text, require_file, row_error
from avfusion.errors import DataError

SPLITS = ("train", "val", "test")
SUBSETS = {"s4": ("v1s",), "ms3": ("v1m",), "avss": ("v1s", "v1m", "v2")}
FRAMES = {"v1s": 5, "v1m": 5, "v2": 10}


def read_label2idx(path: Path, notes: Notes) -> tuple[str, ...]:
    """Class names in index order from label2idx.json, numbered 0..N-1 or (as released) 1..N."""
    try:
        table = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise row_error(path, e.lineno, f"bad JSON ({e.msg})") from e
    if not isinstance(table, dict) or not table or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in table.values()):
        raise DataError(f"{path}: expected {{class name: index}}")
    values, n = sorted(table.values()), len(table)
    if values == list(range(1, n + 1)):
        notes.count(f"classes numbered 1..{n}, read as 0..{n - 1} (index = value - 1)", n)
    elif values != list(range(n)):
        raise DataError(f"{path}: indices are neither 0..{n - 1} nor 1..{n}, each once "
                        f"(found {values[:3]} ... {values[-3:]})")
    return tuple(sorted(table, key=table.__getitem__))


def _labels(a_obj: str, index: dict[str, int], path: Path, line: int) -> tuple[int, ...]:
    out = []
    for name in filter(None, a_obj.split("_")):
        name = "background" if name == "off-the-screen" else name
        if name not in index:
            raise row_error(path, line, f"class {name!r} (a_obj {a_obj!r}) is not in label2idx.json")
        out.append(index[name])
    return tuple(out)


def load_avsbench(root: str | Path, task: str = "s4", *, layout: str = "semantic",
                  mask_dir: str = "labels_semantic") -> Index:
    """Index of AVSBench S4, MS3 or AVSS; see the module docstring for the layout."""
    if task not in SUBSETS:
        raise DataError(f"AVSBench task must be one of {sorted(SUBSETS)}, got {task!r}")
    if layout == "object":
        from avfusion.data.indexes.avsbench_object import load_avsbench_object

        return load_avsbench_object(root, task)
    if layout != "semantic":
        raise DataError(f"AVSBench layout must be 'semantic' or 'object', got {layout!r}")
    root = Path(root).expanduser()
    notes = Notes(root / "label2idx.json")
    names = read_label2idx(require_file(notes.source, "AVSBench classes"), notes)
    index = {n: i for i, n in enumerate(names)}
    path = require_file(root / "metadata.csv", "AVSBench metadata")
    rows = read_csv(path)
    header_line, header = next(rows, (1, []))
    absent = {"uid", "split", "label"} - set(header)
    if absent:
        raise row_error(path, header_line, f"header lacks column(s) {sorted(absent)}; it has {header}")
    out = SplitBuilder(path)
    for line, fields in rows:
        if len(fields) != len(header):
            raise row_error(path, line, f"{len(fields)} fields for {len(header)} columns")
        row = dict(zip(header, fields))
        subset, split, uid = row["label"], row["split"], row["uid"]
        if subset not in FRAMES or split not in SPLITS or not uid:
            raise row_error(path, line, f"bad row: label {subset!r} (one of {sorted(FRAMES)}), split {split!r}, uid {uid!r}")
        if subset not in SUBSETS[task]:
            continue
        clip = root / subset / uid
        n = FRAMES[subset]
        annotated = 1 if (subset == "v1s" and split == "train") else n
        item = Item(id=uid, frames=tuple(clip / "frames" / f"{i}.jpg" for i in range(n)), audio=clip / "audio.wav",
                    masks=tuple(clip / mask_dir / f"{i}.png" if i < annotated else None for i in range(n)),
                    labels=_labels(row.get("a_obj", ""), index, path, line),
                    extra={"subset": subset, "vid": row.get("vid", "")})
        out.add(split, item, line)
    return Index(f"avsbench_{task}", root, out.build(SPLITS), names, notes=dict(notes))
