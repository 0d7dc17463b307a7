"""Batches from a dataset, with data errors counted and named instead of hidden.

`make_loader` wraps `torch.utils.data.DataLoader`. Workers never raise on a `DecodeError`: the
item comes back as a `FailedItem` and the main process decides. `on_error="raise"` (the default, and
the only choice for evaluation) raises the `DecodeError` naming the item; `on_error="skip"` drops it
from its batch (the batch is one item shorter, nothing is substituted), logs each failing file once
(at most 10 messages a minute), appends it to `run_dir/data_errors.jsonl`, and raises `DataError`
once more than `max_error_fraction` of this process's items of the epoch failed.

Evaluation covers every item exactly once over all processes: process r of W reads items r, r+W, ...
(no padding, no duplicates, no replacement); batches carry `index` and `id` for the metrics.
Call `loader.set_epoch(epoch)` before each training epoch: it reshuffles and selects the dataset's
randomness (workers are started per epoch, so they see it).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from avfusion.data.clips import FailedItem
from avfusion.errors import ConfigError, DataError, DecodeError

log = logging.getLogger(__name__)

__all__ = ["make_loader", "Loader", "ShardSampler", "ErrorLog", "collate_samples", "ERRORS_FILE"]

ERRORS_FILE = "data_errors.jsonl"


class ShardSampler(Sampler[int]):
    """This process's share of the item indices.

    shuffle=True (training): a permutation drawn from (seed, epoch), cut to a multiple of world_size
    (the few items left over are dropped this epoch, never padded), then every world_size-th index
    from `rank`. shuffle=False (evaluation): indices rank, rank + W, ...: every item exactly once.
    """

    def __init__(self, num_samples: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"bad shard: rank {rank} of world_size {world_size}")
        self.num_samples, self.shuffle, self.seed = int(num_samples), bool(shuffle), int(seed)
        self.rank, self.world_size, self.epoch = int(rank), int(world_size), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.rank, self.num_samples, self.world_size))
        from avfusion.randomness import Stream, torch_generator
        order = torch.randperm(self.num_samples, generator=torch_generator(self.seed, self.epoch, 0, Stream.ORDER)).tolist()
        usable = self.num_samples - self.num_samples % self.world_size
        return iter(order[self.rank:usable:self.world_size])

    def __len__(self) -> int:
        if not self.shuffle:
            return len(range(self.rank, self.num_samples, self.world_size))
        return self.num_samples // self.world_size


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors of equal shape and ints; keep strings, ragged tensors (boxes) and the rest as lists.

    A key missing from some samples becomes a list with None in their place. A `FailedItem` here
    means the loader did not go through `make_loader`, which counts and drops them: DataError.
    """
    failed = [s for s in samples if isinstance(s, FailedItem)]
    if failed:
        f = failed[0]
        raise DataError(f"item {f.id!r} failed to decode ({f.path}: {f.reason}) and reached collate; "
                        "load with avfusion.data.loading.make_loader to skip and count failing items")
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for s in samples for k in s):
        values = [s.get(key) for s in samples]
        if all(isinstance(v, torch.Tensor) for v in values) and len({v.shape for v in values}) == 1:
            out[key] = torch.stack(values)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values, dtype=torch.int64)
        else:
            out[key] = values
    return out


class _Guarded(Dataset):
    """The dataset with `DecodeError` turned into `FailedItem` (worker exceptions lose their type)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.dataset[i]
        except DecodeError as e:
            item_id = self.dataset.item_id(i) if hasattr(self.dataset, "item_id") else str(i)
            return FailedItem(int(i), item_id, e.path, e.reason, e.where)


class _Collate:
    """(batch of the good samples or None, list of FailedItem)."""

    def __init__(self, inner: Callable[[list], Any]):
        self.inner = inner

    def __call__(self, samples: list) -> tuple[Any, list[FailedItem]]:
        failed = [s for s in samples if isinstance(s, FailedItem)]
        good = [s for s in samples if not isinstance(s, FailedItem)]
        return (self.inner(good) if good else None), failed


class _RateLimit:
    """At most `burst` messages per `period` seconds; counts what it holds back."""

    def __init__(self, burst: int = 10, period: float = 60.0):
        self.burst, self.period = burst, period
        self.times: list[float] = []
        self.held = 0

    def allow(self) -> bool:
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < self.period]
        if len(self.times) < self.burst:
            self.times.append(now)
            return True
        self.held += 1
        return False


class ErrorLog:
    """Counts, logs and records failed items; decides when there are too many."""

    def __init__(self, *, strict: bool, max_fraction: float, total: int, run_dir: str | Path | None,
                 rank: int = 0):
        self.strict, self.max_fraction, self.total, self.rank = strict, float(max_fraction), int(total), rank
        self.path = Path(run_dir) / ERRORS_FILE if run_dir is not None else None
        self.epoch, self.failed_in_epoch, self.failed_total = 0, 0, 0
        self.items: list[dict[str, Any]] = []
        self._logged_paths: set[str] = set()
        self._limit = _RateLimit()

    def new_epoch(self, epoch: int) -> None:
        self.epoch, self.failed_in_epoch = int(epoch), 0

    def add(self, failures: Sequence[FailedItem]) -> None:
        for f in failures:
            if self.strict:
                raise DecodeError(f.path, f.reason, f.where or f"item {f.id!r}, index {f.index}")
            self.failed_in_epoch += 1
            self.failed_total += 1
            record = {"epoch": self.epoch, "rank": self.rank, "index": f.index, "id": f.id,
                      "path": f.path, "reason": f.reason}
            self.items.append(record)
            self._write(record)
            self._warn(f)
        if self.failed_in_epoch > self.max_fraction * self.total:
            where = f"; the list is in {self.path}" if self.path else ""
            raise DataError(f"{self.failed_in_epoch} of {self.total} items failed in epoch {self.epoch}, more "
                            f"than max_error_fraction={self.max_fraction}{where}. Find them all with "
                            "`avfusion data check`, then fix or remove them (Index.without_failed).")

    def _write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:       # one line per write: safe to share
            fh.write(json.dumps(record) + "\n")

    def _warn(self, f: FailedItem) -> None:
        if f.path in self._logged_paths:
            return
        self._logged_paths.add(f.path)
        if self._limit.allow():
            held = f" ({self._limit.held} more not shown)" if self._limit.held else ""
            self._limit.held = 0
            log.warning("skipping item %r (index %d): %s: %s%s", f.id, f.index, f.path, f.reason, held)


class Loader:
    """Iterates over batches (see `make_loader`); `errors` holds the skipped items."""

    def __init__(self, loader: DataLoader, dataset: Dataset, sampler: Any, errors: ErrorLog):
        self.loader, self.dataset, self.sampler, self.errors = loader, dataset, sampler, errors
        self.epoch = 0

    def set_epoch(self, epoch: int, **sampler_options: Any) -> None:
        """Reshuffle and select the dataset's randomness for `epoch`; `sampler_options` go to the
        sampler's `set_epoch` (e.g. the engine's resumable sampler takes `start_batch`)."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch, **sampler_options)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        self.errors.new_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        self.errors.new_epoch(self.epoch)
        for batch, failures in self.loader:
            if failures:
                self.errors.add(failures)
            if batch is not None:
                yield batch
        if self.errors.failed_in_epoch:
            log.warning("epoch %d: skipped %d of %d items%s", self.epoch, self.errors.failed_in_epoch,
                        self.errors.total, f" (listed in {self.errors.path})" if self.errors.path else "")


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int = 0, num_workers: int = 0,
                rank: int = 0, world_size: int = 1, sampler: Sampler | None = None,
                batch_sampler: Sampler | None = None, collate_fn: Callable[[list], Any] | None = None,
                on_error: str = "raise", max_error_fraction: float = 0.01, run_dir: str | Path | None = None,
                drop_last: bool | None = None, pin_memory: bool = False,
                generator: torch.Generator | None = None,
                worker_init_fn: Callable[[int], None] | None = None) -> Loader:
    """A `Loader` over `dataset` for this process (`rank` of `world_size`), or over `sampler` /
    `batch_sampler` when given. Training shuffles per epoch and drops the last short batch by default;
    evaluation keeps order and every item, and is always strict (`on_error="raise"`). `generator` and
    `worker_init_fn` go to the `DataLoader` (they seed its workers).
    """
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not train and on_error == "skip":
        raise ConfigError("evaluation is always strict (on_error='raise'): to leave out broken items, "
                          "remove them from the index with Index.without_failed(report), which counts them")
    if not train and drop_last:
        raise ConfigError("evaluation must see every item: drop_last=True is not allowed")
    if not 0.0 <= max_error_fraction < 1.0:
        raise ConfigError(f"max_error_fraction must be in [0, 1), got {max_error_fraction}")
    if sampler is not None and batch_sampler is not None:
        raise ConfigError("give a sampler or a batch_sampler, not both")
    collate = _Collate(collate_fn or collate_samples)
    guarded = _Guarded(dataset)
    common = dict(num_workers=num_workers, collate_fn=collate, pin_memory=pin_memory, generator=generator,
                  worker_init_fn=worker_init_fn)
    if batch_sampler is not None:
        loader = DataLoader(guarded, batch_sampler=batch_sampler, **common)
        total, used = len(batch_sampler) * batch_size, batch_sampler
    else:
        used = sampler or ShardSampler(len(dataset), shuffle=train, seed=seed, rank=rank, world_size=world_size)
        loader = DataLoader(guarded, batch_size=batch_size, sampler=used,
                            drop_last=bool(train if drop_last is None else drop_last), **common)
        total = len(used)
    errors = ErrorLog(strict=on_error == "raise", max_fraction=max_error_fraction, total=total,
                      run_dir=run_dir, rank=rank)
    return Loader(loader, dataset, used, errors)
