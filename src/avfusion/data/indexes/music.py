"""MUSIC (Zhao et al., ECCV 2018) solo/duet lists, and the fixed VGGSound-Music separation pairs.

MUSIC, the JSON lists of the dataset's own release (`layout="json"`)::

    <root>/MUSIC_solo_videos.json    {"videos": {category: [YouTube id, ...]}}   (version="MUSIC")
    <root>/MUSIC_duet_videos.json    duet categories name two instruments, e.g. "acoustic_guitar violin"
    <root>/MUSIC21_solo_videos.json  (version="MUSIC21": 21 instruments, solo only)
    <root>/<category>/<id>.mp4       (`pattern`, relative to root, with fields {category} and {id})

Splits are the lists ("solo", "duet"); the datasets define no train/test partition. Classes: the
sorted instruments; a duet item carries both. Item ids are "<category>/<id>". `video_lists=` names
other list files per split. The official DeepAVFusion layout (anno/*.csv, several segment files per
video, the official train / eval / test partition) is `layout="official"`, see `music_official`;
`layout="auto"` (default) reads it when `<root>/anno` is a folder.

VGGSound-Music pairs (the official DeepAVFusion `vggmusic_eval_ss.csv`, rows
`source_1,source_2,class_1,class_2,sep_type` with an optional header): clips `<YTID>_<start:06d>` read
from a VGGSound tree at `root` (`clips/<folder>/<YTID>_<start:06d>_<start+10:06d>.mp4`, folder =
"playing_<class>" sanitised like VGGSound's). Rows with only two ids take the classes from
annotations/vggsound.csv. One item per row, in order, split "test"; id `<row:04d>:<id1>+<id2>`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from avfusion.data.indexes.base import (Index, Item, SplitBuilder, read_csv, read_text, require_file, resolve,
                                         row_error)
from avfusion.data.indexes.vggsound import clip_name, find_annotations, folder_name, read_rows
from avfusion.errors import ConfigError, DataError

LISTS = {"MUSIC": {"solo": "MUSIC_solo_videos.json", "duet": "MUSIC_duet_videos.json"},
         "MUSIC-solo": {"solo": "MUSIC_solo_videos.json"},
         "MUSIC21": {"solo": "MUSIC21_solo_videos.json"}}


def read_video_list(path: Path) -> dict[str, list[str]]:
    """{category: [ids]} from a MUSIC *_videos.json file."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise row_error(path, e.lineno, f"bad JSON ({e.msg})") from e
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict) or not all(
            isinstance(k, str) and k.strip() and isinstance(v, list) and all(isinstance(i, str) and i for i in v)
            for k, v in videos.items()):
        raise DataError(f"{path}: expected {{\"videos\": {{category: [YouTube id, ...]}}}}")
    return videos


def load_music(root: str | Path, *, version: str = "MUSIC", layout: str = "auto",
               video_lists: Mapping[str, str | Path] | None = None, pattern: str = "{category}/{id}.mp4") -> Index:
    """Index of MUSIC solo (and duet) videos; see the module docstring for the layouts."""
    root = Path(root).expanduser()
    if layout not in ("auto", "json", "official"):
        raise DataError(f"MUSIC layout must be 'auto', 'json' or 'official', got {layout!r}")
    if layout == "official" or (layout == "auto" and (root / "anno").is_dir()):
        from avfusion.data.indexes.music_official import load_music_official

        return load_music_official(root, version)
    lists = video_lists
    if lists is None:
        if version not in LISTS:
            raise DataError(f"MUSIC version must be one of {sorted(LISTS)}, got {version!r}")
        lists = LISTS[version]
    try:
        pattern.format(category="c", id="i")
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"MUSIC pattern {pattern!r} is invalid ({e!r}); fields are {{category}} {{id}}") from e
    read = {split: (p := require_file(resolve(root, f), f"MUSIC {split} list"), read_video_list(p))
            for split, f in lists.items()}
    names = tuple(sorted({inst for _, videos in read.values() for cat in videos for inst in cat.split()}))
    index = {n: i for i, n in enumerate(names)}
    splits = {}
    for split, (path, videos) in read.items():
        out = SplitBuilder(path)
        for cat, ids in videos.items():
            labels = tuple(index[inst] for inst in cat.split())
            for vid in ids:
                item = Item(id=f"{cat}/{vid}", media=(root / pattern.format(category=cat, id=vid),),
                            labels=labels, extra={"category": cat, "ytid": vid})
                out.add(split, item, f"category {cat!r}")
        splits[split] = out.build([split])[split]
    return Index("music", root, splits, names)


def _clip(root: Path, clip: str, folder: str, path: Path, line: int) -> Path:
    ytid, _, start = clip.rpartition("_")
    if not ytid or not start.isdigit():
        raise row_error(path, line, f"clip id {clip!r} is not <YTID>_<start:06d>")
    return root / "clips" / folder / clip_name(ytid, int(start))


def load_vggsound_music(root: str | Path, *, pairs: str | Path = "annotations/vggmusic_eval_ss.csv",
                        annotations: str | Path | None = None) -> Index:
    """Index of the fixed VGGSound-Music separation pairs; see the module docstring."""
    root = Path(root).expanduser()
    path = require_file(resolve(root, pairs), "VGGSound-Music pair list")
    rows = [(line, f) for line, f in read_csv(path)]
    if rows and rows[0][1][:2] == ["source_1", "source_2"]:
        rows = rows[1:]
    labels: dict[str, str] | None = None
    if any(len(f) < 4 for _, f in rows):
        vgg = find_annotations(root, annotations)
        labels = {f"{ytid}_{start:06d}": label for _, ytid, start, label, _ in read_rows(vgg)}
    out = SplitBuilder(path)
    for k, (line, fields) in enumerate(rows):
        if len(fields) < 2 or len(fields) == 3 or not fields[0] or not fields[1]:
            raise row_error(path, line, "expected source_1,source_2[,class_1,class_2[,...]]")
        ids = fields[:2]
        if len(fields) >= 4:
            classes = fields[2:4]  # instrument names as in the official list: "bass_drum", "violin,_fiddle"
            folders = [folder_name(c) if c.startswith("playing") else folder_name(f"playing_{c}") for c in classes]
        else:
            missing = [c for c in ids if c not in labels]
            if missing:
                raise row_error(path, line, f"clip(s) {missing} not in {vgg}; give their classes")
            classes = [labels[c] for c in ids]
            folders = [folder_name(c) for c in classes]
        media = tuple(_clip(root, c, folder, path, line) for c, folder in zip(ids, folders))
        item = Item(id=f"{k:04d}:{ids[0]}+{ids[1]}", media=media,
                    extra={"sources": tuple(ids), "classes": tuple(classes), "row": tuple(fields[4:])})
        out.add("test", item, line)
    return Index("vggsound_music", root, out.build(["test"]))
