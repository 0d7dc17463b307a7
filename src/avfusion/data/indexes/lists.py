"""Id lists: restrict a split of an index to the ids a file lists (VGG-SS heard / unheard, subsets, ...).

A list file holds one item a line; its id is the line's first field, up to the first comma or
whitespace (`zpWuikVorYg_000032`, `<YTID>_<start:06d>,<label>`, CRLF or not). Blank lines are
skipped. The ids must be in the index's id form (docs/datasets.md gives it for every dataset).
The restricted split holds the listed items in file order; listed ids the index lacks, and repeats,
are counted in `Index.notes` and logged, never silently dropped.
"""
from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Mapping

from avfusion.data.indexes.base import Index, Item, Notes, read_text, require_file, resolve
from avfusion.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_FIRST_FIELD = re.compile(r"[,\s]")


def read_id_list(path: Path) -> list[tuple[int, str]]:
    """(line number, id) for every non-blank line of an id list."""
    out = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        text = line.strip()
        if text:
            out.append((number, _FIRST_FIELD.split(text, maxsplit=1)[0]))
    return out


def restrict(index: Index, lists: Mapping[str, str | Path], *, across_splits: bool = False) -> Index:
    """`index` with each split of `lists` holding exactly the listed ids, in file order.

    Paths are relative to the index root unless absolute. With `across_splits`, ids are looked up in
    every split (the official VGGSound-Music training list ignores VGGSound's train/test partition).
    """
    if not isinstance(lists, Mapping):
        raise ConfigError(f"lists must map a split to an id-list file, e.g. {{'test': 'heard.csv'}}; got {lists!r}")
    splits, notes = dict(index.splits), Notes(index.root)
    notes.update(index.notes)
    for split, file in lists.items():
        if split not in index.splits:
            raise ConfigError(f"{index.name}: cannot restrict split {split!r} by a list; this index has "
                              f"{sorted(index.splits)}")
        path = require_file(resolve(index.root, file), f"{index.name} {split} id list")
        notes.source = path
        pool = [it for items in index.splits.values() for it in items] if across_splits else index.splits[split]
        splits[split] = _select(pool, read_id_list(path), path, split, notes)
        log.info("%s/%s restricted to %d items listed in %s", index.name, split, len(splits[split]), path)
    return replace(index, splits=splits, notes=dict(notes))


def _select(pool: tuple[Item, ...] | list[Item], listed: list[tuple[int, str]], path: Path, split: str,
            notes: Notes) -> tuple[Item, ...]:
    by_id = {it.id: it for it in pool}
    kept, seen = [], set()
    for line, item_id in listed:
        if item_id in seen:
            notes.count(f"{split}: ids repeated in {path.name} (kept once)", example=f"line {line} ({item_id})")
            continue
        seen.add(item_id)
        if item_id in by_id:
            kept.append(by_id[item_id])
        else:
            notes.count(f"{split}: ids listed in {path.name} that the index lacks (left out)",
                        example=f"line {line} ({item_id})")
    if listed and not kept:
        raise DataError(f"{path}: none of its {len(listed)} ids is an item of split {split!r}; ids must be in "
                        f"the index's form, e.g. {pool[0].id!r}" if pool else f"{path}: split {split!r} is empty")
    return tuple(kept)
