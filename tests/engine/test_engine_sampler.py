"""The deterministic distributed sampler: order per epoch, rank split, mid-epoch restart."""
from __future__ import annotations

from avfusion.engine.sampler import ResumableBatchSampler


def test_order_depends_on_seed_and_epoch_only():
    a, b = ResumableBatchSampler(20, 4, seed=1), ResumableBatchSampler(20, 4, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(sum(list(a), [])) == list(range(20))
    assert list(ResumableBatchSampler(20, 4, seed=2)) != first


def test_ranks_split_the_single_process_batches():
    one = ResumableBatchSampler(22, 6, seed=3)  # 3 global batches of 6, 4 samples dropped
    two = [ResumableBatchSampler(22, 3, rank=r, world_size=2, seed=3) for r in range(2)]
    assert len(one) == len(two[0]) == len(two[1]) == 3
    for batch, half0, half1 in zip(one, *two):
        assert batch == half0 + half1


def test_restart_mid_epoch():
    s = ResumableBatchSampler(40, 4, seed=0)
    s.set_epoch(5)
    full = list(s)
    s.set_epoch(5, start_batch=6)
    assert len(s) == 4 and list(s) == full[6:]


def test_evaluation_split_covers_every_index_once():
    parts = [list(ResumableBatchSampler(11, 2, rank=r, world_size=3, shuffle=False, drop_last=False))
             for r in range(3)]
    flat = sorted(i for part in parts for batch in part for i in batch)
    assert flat == list(range(11))
    assert all(batch for part in parts for batch in part)  # no empty batches
