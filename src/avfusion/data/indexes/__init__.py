"""Dataset indexes: each dataset's own distribution format read into `Index` objects of `Item`s.

    from avfusion.data.indexes import open_index
    index = open_index("vggsound", "/data/vggsound")
    print(index.report(check_readable=True))

Layouts: each module's docstring and docs/datasets.md.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

from avfusion.data.indexes.audioset import load_audioset
from avfusion.data.indexes.avsbench import load_avsbench
from avfusion.data.indexes.base import Box, Index, Item
from avfusion.data.indexes.flickr import load_flickr
from avfusion.data.indexes.lists import read_id_list, restrict
from avfusion.data.indexes.manifest import load_manifest
from avfusion.data.indexes.music import load_music, load_vggsound_music
from avfusion.data.indexes.report import Problem, Report, SplitCounts
from avfusion.data.indexes.vggsound import load_vggsound
from avfusion.data.indexes.vggss import load_vggss
from avfusion.errors import ConfigError

INDEXES: dict[str, Callable[..., Index]] = {
    "vggsound": load_vggsound,
    "audioset": load_audioset,
    "flickr": load_flickr,
    "vggss": load_vggss,
    "music": load_music,
    "vggsound_music": load_vggsound_music,
    "avsbench_s4": partial(load_avsbench, task="s4"),
    "avsbench_ms3": partial(load_avsbench, task="ms3"),
    "avsbench_avss": partial(load_avsbench, task="avss"),
    "manifest": load_manifest,
}


def available() -> list[str]:
    """Names `open_index` accepts."""
    return sorted(INDEXES)


def open_index(name: str, root: str | Path, *, lists: Mapping[str, str | Path] | None = None,
               **kwargs: Any) -> Index:
    """The index of dataset `name` at `root`; keyword arguments go to that dataset's loader.

    `lists={split: file}` restricts each named split to the ids its file lists, in file order
    (`avfusion.data.indexes.lists`; paths relative to `root` unless absolute).
    """
    if name not in INDEXES:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(available())}")
    index = INDEXES[name](root, **kwargs)
    return restrict(index, lists) if lists else index


__all__ = ["Box", "Index", "Item", "Problem", "Report", "SplitCounts", "available", "open_index", "load_audioset",
           "load_avsbench", "load_flickr", "load_manifest", "load_music", "load_vggsound", "load_vggsound_music",
           "load_vggss", "read_id_list", "restrict"]
