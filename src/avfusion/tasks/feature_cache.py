"""Features of a frozen encoder over a fixed training set, computed once per item and reused every epoch.

A head trained on a frozen encoder (the contrastive localiser) needs many passes over its training set,
while the encoder's share of each step, the expensive one, gives the same numbers every epoch. The cache
keeps them. Items are computed in fixed chunks of consecutive indices (``CHUNK``), whichever batch first
asks for one of them, so an item's features are the same bits in a fresh run, a resumed run and any
batch order: the batch an encoder pass sees can change its floating-point rounding.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

#: Items encoded together; fixed, so that what is cached does not depend on the batch that asked.
CHUNK = 128


class FeatureCache:
    """Per-index outputs of ``compute`` over ``dataset`` (whose items must not change between epochs).

    ``compute(batch)`` maps a collated batch of dataset items to a tuple of tensors with the batch on the
    first axis; it runs without gradients. ``collate`` builds that batch from a list of items, ``device``
    is where ``compute`` runs and the features stay.
    """

    def __init__(self, dataset: Dataset, compute: Callable[[Any], Sequence[torch.Tensor]],
                 collate: Callable[[list], Any], to_device: Callable[[Any], Any], chunk: int = CHUNK):
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.dataset, self.compute, self.collate, self.to_device = dataset, compute, collate, to_device
        self.chunk = chunk
        self._chunks: dict[int, tuple[torch.Tensor, ...]] = {}

    def __len__(self) -> int:
        """Items cached so far."""
        return sum(len(parts[0]) for parts in self._chunks.values())

    def _load(self, c: int) -> tuple[torch.Tensor, ...]:
        if c not in self._chunks:
            stop = min(len(self.dataset), (c + 1) * self.chunk)
            batch = self.to_device(self.collate([self.dataset[i] for i in range(c * self.chunk, stop)]))
            with torch.no_grad():
                self._chunks[c] = tuple(t.detach() for t in self.compute(batch))
        return self._chunks[c]

    def get(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The cached features of ``indices`` (positions in the dataset), stacked in that order."""
        rows = [int(i) for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices)]
        if any(not 0 <= i < len(self.dataset) for i in rows):
            raise IndexError(f"feature cache: indices {rows} outside the training set of {len(self.dataset)} items")
        parts = [self._load(i // self.chunk) for i in rows]
        return tuple(torch.stack([p[k][i % self.chunk] for p, i in zip(parts, rows)])
                     for k in range(len(parts[0])))


class ModelFeatureCaches:
    """One :class:`FeatureCache` per model a task trains (a task object can train several models, e.g.
    in tests), each computing ``compute(model, batch)`` with that model; a cache never keeps its model alive."""

    def __init__(self, dataset: Callable[[], Dataset], compute: Callable[[Any, Any], Sequence[torch.Tensor]],
                 collate: Callable[[list], Any], to_device: Callable[[Any, torch.device], Any]):
        self.dataset, self.compute, self.collate, self.to_device = dataset, compute, collate, to_device
        self._caches: "weakref.WeakKeyDictionary[torch.nn.Module, FeatureCache]" = weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        """Models with a cache now."""
        return len(self._caches)

    def __getitem__(self, model: torch.nn.Module) -> FeatureCache:
        return self._caches[model]

    def get(self, model: torch.nn.Module, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The cached features of ``indices`` under ``model`` (an unwrapped model)."""
        if model not in self._caches:
            device = next(model.parameters()).device
            owner = weakref.ref(model)
            self._caches[model] = FeatureCache(self.dataset(), lambda batch: self.compute(owner(), batch),
                                               self.collate, lambda batch: self.to_device(batch, device))
        return self._caches[model].get(indices)
