"""A deterministic, distributed, resumable batch sampler.

The order of epoch ``e`` is a permutation drawn from a generator seeded with ``seed + e``; global
batch ``i`` is ``perm[i*B*W : (i+1)*B*W]`` (B per-process batch, W processes) and rank ``r`` takes
the ``r``-th slice of B. So W processes with batch B see exactly the samples one process with batch
W*B sees, and a run can restart at any batch of any epoch without replaying the data.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields this rank's lists of indices; ``set_epoch(e, start_batch=k)`` skips the first k batches.

    ``shuffle=False, drop_last=False`` gives an evaluation split: rank r takes indices r, r+W, ...,
    every index exactly once over all ranks (the last batch may be short; ranks may differ by one batch).
    """

    def __init__(self, num_samples: int, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True, drop_last: bool = True):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler setup: batch_size={batch_size} rank={rank} world_size={world_size}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; the next iteration begins at batch ``start_batch``."""
        if not 0 <= start_batch <= self.num_batches:
            raise ValueError(f"start_batch {start_batch} outside [0, {self.num_batches}]")
        self.epoch, self.start_batch = epoch, start_batch

    @property
    def num_batches(self) -> int:
        """This rank's batches per epoch (the same on every rank when ``drop_last``)."""
        if self.drop_last:
            return self.num_samples // (self.batch_size * self.world_size)
        mine = len(range(self.rank, self.num_samples, self.world_size))
        return -(-mine // self.batch_size)

    def __len__(self) -> int:
        return self.num_batches - self.start_batch

    def order(self) -> list[int]:
        """The epoch's sample order (global, before splitting over ranks)."""
        if not self.shuffle:
            return list(range(self.num_samples))
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.num_samples, generator=gen).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        if self.drop_last:
            step = self.batch_size * self.world_size
            for i in range(self.start_batch, self.num_batches):
                lo = i * step + self.rank * self.batch_size
                yield order[lo: lo + self.batch_size]
        else:
            mine = order[self.rank:: self.world_size]
            for i in range(self.start_batch, self.num_batches):
                yield mine[i * self.batch_size: (i + 1) * self.batch_size]
