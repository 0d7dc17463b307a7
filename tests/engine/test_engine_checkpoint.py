"""Atomic checkpoints with checksums, keep-last-K, fallback past damaged files, RNG round trip."""
from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from avfusion.engine import checkpoint as ckpt
from avfusion.errors import CheckpointError


def _state(step):
    return {"step": step, "w": torch.full((3,), float(step)), "meta": {"names": ["a"], "pair": (1, 2.5)}}


def test_save_keep_last_and_checksum(tmp_path):
    for step in (1, 2, 3, 4):
        path = ckpt.save_checkpoint(_state(step), tmp_path, step, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step_00000003.pt", "step_00000003.pt.sha256", "step_00000004.pt", "step_00000004.pt.sha256"]
    ckpt.verify(path)
    state = ckpt.load_checkpoint(path)
    assert state["step"] == 4 and state["meta"]["pair"] == (1, 2.5) and torch.equal(state["w"], torch.full((3,), 4.0))


def test_stale_temporary_files_are_removed(tmp_path):
    (tmp_path / ".step_00000009.pt.tmp12345").write_bytes(b"half a file")
    ckpt.save_checkpoint(_state(1), tmp_path, 1, keep_last=1)
    assert not list(tmp_path.glob(".step_*"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_sidecar"])
def test_damaged_latest_falls_back_with_warning(tmp_path, caplog, damage):
    for step in (2, 4):
        ckpt.save_checkpoint(_state(step), tmp_path, step, keep_last=3)
    latest = ckpt.checkpoint_path(tmp_path, 4)
    data = bytearray(latest.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        latest.write_bytes(bytes(data))
    elif damage == "truncate":
        latest.write_bytes(bytes(data[: len(data) // 3]))
    else:
        latest.with_name(latest.name + ".sha256").unlink()
    with caplog.at_level(logging.WARNING, logger="avfusion.engine.checkpoint"):
        path, state = ckpt.load_latest(tmp_path)
    assert path == ckpt.checkpoint_path(tmp_path, 2) and state["step"] == 2
    assert "step_00000004.pt" in caplog.text and "falling back" in caplog.text
    with pytest.raises(CheckpointError, match="step_00000004"):
        ckpt.load_checkpoint(latest)


def test_all_damaged_raises_and_empty_is_none(tmp_path):
    assert ckpt.load_latest(tmp_path) is None
    path = ckpt.save_checkpoint(_state(1), tmp_path, 1, keep_last=1)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="every checkpoint"):
        ckpt.load_latest(tmp_path)


def test_foreign_pickle_is_refused(tmp_path):
    path = tmp_path / "step_00000001.pt"
    torch.save({"x": torch.nn.Linear(2, 2)}, path)  # a module: not loadable with weights_only
    with pytest.raises(CheckpointError, match="cannot be read"):
        ckpt.load_checkpoint(path, check=False)


def test_rng_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in NumPy's state
    path = ckpt.save_checkpoint({"rng": ckpt.capture_rng()}, tmp_path, 1, keep_last=1)
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.restore_rng(ckpt.load_checkpoint(path)["rng"])
    got = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_a_killed_write_leaves_only_a_temporary_that_the_next_save_removes(tmp_path):
    """Every atomic write goes through one helper: an exception inside it leaves the target untouched and
    no temporary; a killed process's temporary is removed by the next checkpoint save."""
    from avfusion.checkpoints.io import atomic_path

    target = tmp_path / "step_00000002.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, durable=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002.pt"]
    (tmp_path / ".step_00000003.pt.x1y2z3.tmp").write_bytes(b"half a file")   # what SIGKILL would leave
    ckpt.save_checkpoint(_state(4), tmp_path, 4, keep_last=5)
    assert not list(tmp_path.glob(".*"))
