"""Two gloo processes under torchrun with batch B equal one process with batch 2B."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from _engine_toy import ToyTask, toy_config
from avfusion.engine import run_training
from avfusion.engine.distributed import init_distributed

TOY_SCRIPT = Path(__file__).with_name("_engine_toy.py")
COMMON = ["toy.dropout=0.0", "train.max_steps=3", "train.accum_steps=2", "train.warmup_epochs=0",
          "train.stream_ramp_epochs=0", "train.base_lr=0.5", "train.checkpoint_every=2"]


def test_single_process_without_launcher(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    env = init_distributed("cpu")
    assert (env.rank, env.world_size, env.is_main, env.distributed) == (0, 1, True, False)


def test_two_processes_equal_one_with_double_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(TOY_SCRIPT), str(tmp_path / "two"), "train.batch_size=4", *COMMON],
        env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run_training(ToyTask(toy_config(["train.batch_size=8", *COMMON])), tmp_path / "one", resume=None)
    finally:
        torch.set_num_threads(threads)
    assert one.step == 3
    ours, ref = load_file(tmp_path / "two" / "final" / "model.safetensors"), one.model.state_dict()
    initial = ToyTask(toy_config()).build_model().state_dict()  # same seed: same start
    for key, value in ref.items():
        assert not torch.equal(value, initial[key]) or key.endswith("bias")  # training moved the weights
        err = (ours[key].double() - value.double()).abs().max() / value.double().abs().max()
        assert err <= 1e-5, f"{key}: relative error {err:.2e}"
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").glob("*.pt")) == [
        "step_00000002.pt", "step_00000003.pt"]  # written once, by rank 0
