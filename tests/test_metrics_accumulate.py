"""Accumulators: single-process path, dedupe of sampler padding, a 2-process gloo gather (layering: test_layers.py)."""
from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from avfusion.metrics import Accumulator, Skipped, merge_unique



def test_single_process_sorted_first_kept():
    acc = Accumulator("toy")
    acc.add(3, 0.3)
    acc.extend([1, 2], [0.1, Skipped("silent estimate")])
    acc.add(1, 99.0)  # duplicate id: the first result stays
    assert len(acc) == 4
    assert acc.gather() == {1: 0.1, 2: Skipped("silent estimate"), 3: 0.3}
    assert acc.duplicates_dropped == 1
    acc.reset()
    assert acc.gather() == {} and acc.duplicates_dropped == 0


def test_unhashable_id_and_length_mismatch():
    acc = Accumulator()
    with pytest.raises(TypeError):
        acc.add([1, 2], 0.0)
    with pytest.raises(ValueError):
        acc.extend([1, 2], [0.0])


def test_merge_unique_mixed_ids_keep_order():
    merged, dropped = merge_unique([("b", 1), (2, 2), ("b", 3)])
    assert list(merged) == ["b", 2] and merged["b"] == 1 and dropped == 1


def test_distributed_sampler_padding_is_deduplicated():
    # 5 items on 2 ranks: the sampler pads to 6, rank 0 gets 0 2 4, rank 1 gets 1 3 0
    data = list(range(5))
    per_rank = [list(DistributedSampler(data, num_replicas=2, rank=r, shuffle=False))
                for r in range(2)]
    assert per_rank == [[0, 2, 4], [1, 3, 0]]
    pairs = [(i, (rank, i)) for rank, idx in enumerate(per_rank) for i in idx]
    merged, dropped = merge_unique(pairs)
    assert list(merged) == [0, 1, 2, 3, 4] and dropped == 1
    assert merged[0] == (0, 0)  # rank 0's copy is kept


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        acc = Accumulator("ddp")
        for i in DistributedSampler(list(range(5)), num_replicas=world, rank=rank, shuffle=False):
            acc.add(f"clip{i}", {"rank": rank, "value": i * 10})
        result = (acc.gather(), acc.duplicates_dropped)
        Path(out_dir, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_gather(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    # fork, not spawn: the children need no fresh interpreter (spawn re-imports torch: ~30 s here)
    ctx = mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)),
                             nprocs=2, join=False, start_method="fork")
    deadline = time.monotonic() + 60
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.terminate()
            pytest.fail("2-process gather did not finish within 60 s")
    results = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    assert results[0] == results[1]
    merged, dropped = results[0]
    assert list(merged) == [f"clip{i}" for i in range(5)] and dropped == 1
    assert [merged[f"clip{i}"]["rank"] for i in range(5)] == [0, 1, 0, 1, 0]
    assert merged["clip0"]["value"] == 0
