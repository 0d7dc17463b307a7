"""MUSIC as the official DeepAVFusion DATASETS.md lays it out, with the official code's partition.

Expected layout (`layout="official"`)::

    <root>/anno/music_solo.csv      a header line, then `YouTube id,class,...` rows (version "MUSIC",
    <root>/anno/music21_duet.csv    "MUSIC-solo"); music21_solo.csv for version "MUSIC21"
    <root>/anno/music21_solo.csv
    <root>/clips_360p_segm/<class>/<id>.<k>.mp4     several segment files per video

A class is the row's class with ' ' replaced by '_' (a duet row's class names its two instruments and
is one class of its own, as in the official code); classes are those of every row, sorted. Versions:
"MUSIC" reads music_solo.csv (solo) and music21_duet.csv (duet), "MUSIC-solo" music_solo.csv,
"MUSIC21" music21_solo.csv (the official `music`, `music_solo` and `music_solo21`).

The partition is the official one, by video: the videos with at least one segment file on disk,
sorted; `eval` takes every (n // 130)-th solo video, `test` every (n // 85)-th duet video (n: how many
there are), `train` the rest. It depends on which files are present, as the official one does; a video
listed with no segment file is in no split and is counted in `Index.notes`. (With fewer than 130 solo
or 85 duet videos the official code stops on a zero step; here the step is then 1.) One item per
segment file, id `<class>/<id>.<k>`, `extra["video"]` the YouTube id.
"""
from __future__ import annotations

import os
from pathlib import Path

from avfusion.data.indexes.base import Index, Item, Notes, SplitBuilder, read_csv, require_file, row_error
from avfusion.errors import DataError

FILES = {"MUSIC": (("music_solo.csv", "solo"), ("music21_duet.csv", "duet")),
         "MUSIC-solo": (("music_solo.csv", "solo"),),
         "MUSIC21": (("music21_solo.csv", "solo"),)}
SPLITS = ("train", "eval", "test")
CLIPS = "clips_360p_segm"
EVAL_SOLO, TEST_DUET = 130, 85  # the official partition's strides: every (n // 130)-th solo video, ...


def read_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line, YouTube id, class folder) for every row after the header of an anno/*.csv file."""
    rows = []
    for k, (line, fields) in enumerate(read_csv(path)):
        if k == 0:
            continue  # the header, skipped as the official code skips the first row
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise row_error(path, line, f"expected 'YouTube id,class,...', got {fields}")
        rows.append((line, fields[0], fields[1].replace(" ", "_")))
    return rows


def _segments(folder: Path, listing: dict[Path, list[str]], yid: str) -> list[str]:
    """Names `<yid>.<k>.mp4` in `folder` (the official glob `<yid>.*.mp4`), in segment order."""
    if folder not in listing:
        try:
            with os.scandir(folder) as entries:
                listing[folder] = sorted(e.name for e in entries if e.name.endswith(".mp4"))
        except OSError:
            listing[folder] = []
    prefix = f"{yid}."
    names = [n for n in listing[folder] if n.startswith(prefix) and len(n) >= len(prefix) + 4]
    return sorted(names, key=lambda n: (len(n), n))  # yid.2.mp4 before yid.10.mp4


def _partition(kinds: dict[str, str]) -> dict[str, str]:
    """{video: split} by the official rule over the videos that have segment files."""
    solo = sorted(v for v, kind in kinds.items() if kind == "solo")
    duet = sorted(v for v, kind in kinds.items() if kind == "duet")
    held = {v: "eval" for v in solo[::max(1, len(solo) // EVAL_SOLO)]}
    held.update({v: "test" for v in duet[::max(1, len(duet) // TEST_DUET)]} if duet else {})
    return {v: held.get(v, "train") for v in kinds}


def load_music_official(root: Path, version: str = "MUSIC") -> Index:
    """Index of MUSIC in the official anno/ + clips_360p_segm/ layout; see the module docstring."""
    if version not in FILES:
        raise DataError(f"MUSIC version (official layout) must be one of {sorted(FILES)}, got {version!r}")
    rows = [(path, kind, row) for name, kind in FILES[version]
            for path in [require_file(root / "anno" / name, f"MUSIC {kind} list")] for row in read_rows(path)]
    names = tuple(sorted({folder for _, _, (_, _, folder) in rows}))
    index = {n: i for i, n in enumerate(names)}
    notes, listing = Notes(root / "anno"), {}
    found: dict[str, list[tuple[Path, int, Item]]] = {}
    kinds: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for path, kind, (line, yid, folder) in rows:
        if (folder, yid) in seen:
            notes.count("rows repeating a (video, class) pair, read once", example=f"{path.name} line {line}")
            continue
        seen.add((folder, yid))
        segments = _segments(root / CLIPS / folder, listing, yid)
        if not segments:
            notes.count("videos listed without segment files (in no split, as the official partition)",
                        example=f"{path.name} line {line} ({yid})")
            continue
        kinds[yid] = kind
        found.setdefault(yid, []).extend(
            (path, line, Item(id=f"{folder}/{name[:-4]}", media=(root / CLIPS / folder / name,),
                              labels=(index[folder],), extra={"video": yid, "kind": kind}))
            for name in segments)
    split_of = _partition(kinds)
    out = SplitBuilder(root / "anno")
    for yid in sorted(found):
        for path, line, item in found[yid]:
            out.add(split_of[yid], item, f"{path.name} line {line}")
    return Index("music", root, out.build(SPLITS), names, notes=dict(notes))
