"""Collect per-item metric results on every rank and gather them without duplicates.

Evaluation scores each item exactly once: a DistributedSampler pads the last batch by repeating
items on other ranks, so results are keyed by an item id (e.g. the dataset index or a clip name,
the same on every rank) and only the first occurrence of an id is kept (lowest rank first).
"""
from __future__ import annotations

import logging
from typing import Any, Hashable, Iterable

import torch.distributed as dist

from ._common import Skipped

logger = logging.getLogger(__name__)

__all__ = ["Accumulator", "Skipped", "merge_unique"]


def merge_unique(pairs: Iterable[tuple[Hashable, Any]]) -> tuple[dict[Hashable, Any], int]:
    """(id, result) pairs -> ({id: first result}, number of duplicates dropped); ids sorted when
    they are mutually comparable, else kept in first-seen order."""
    merged: dict[Hashable, Any] = {}
    dropped = 0
    for item_id, result in pairs:
        if item_id in merged:
            dropped += 1
        else:
            merged[item_id] = result
    try:
        keys = sorted(merged)
    except TypeError:
        return merged, dropped
    return {k: merged[k] for k in keys}, dropped


class Accumulator:
    """Per-item results of one protocol, keyed by item id; `gather()` merges all ranks.

    Works in a single process when torch.distributed is not initialised. With NCCL, the current
    CUDA device must be set (all_gather_object moves pickled results through it).
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._pairs: list[tuple[Hashable, Any]] = []
        self.duplicates_dropped = 0  # set by gather()

    def add(self, item_id: Hashable, result: Any) -> None:
        """Record one item's result (a float, a dict, arrays, or `Skipped`)."""
        hash(item_id)  # fail here, not at gather time, on an unhashable id
        self._pairs.append((item_id, result))

    def extend(self, item_ids: Iterable[Hashable], results: Iterable[Any]) -> None:
        """Record several items (e.g. a batch); ids and results are zipped strictly."""
        for item_id, result in zip(item_ids, results, strict=True):
            self.add(item_id, result)

    def __len__(self) -> int:
        return len(self._pairs)

    def reset(self) -> None:
        self._pairs.clear()
        self.duplicates_dropped = 0

    def gather(self, group: Any = None) -> dict[Hashable, Any]:
        """All ranks' results as {id: result}, each id once; every rank gets the same dict."""
        if dist.is_available() and dist.is_initialized():
            world = dist.get_world_size(group)
            per_rank: list[Any] = [None] * world
            dist.all_gather_object(per_rank, self._pairs, group=group)
            pairs = [p for rank_pairs in per_rank for p in rank_pairs]
        else:
            pairs = self._pairs
        merged, self.duplicates_dropped = merge_unique(pairs)
        if self.duplicates_dropped:
            logger.info("%s: dropped %d duplicate item(s) (sampler padding)",
                        self.name or "accumulator", self.duplicates_dropped)
        return merged
