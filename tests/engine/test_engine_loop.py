"""The loop on a toy task: exact resume after SIGKILL, fallback past damage, non-finite losses, outputs."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from _engine_toy import ToyConfig, ToyTask, toy_config
from avfusion.engine import build, run_training
from avfusion.engine import checkpoint as ckpt
from avfusion.errors import CheckpointError, ConfigError, DataError, DecodeError, NonFiniteLossError

TOY_SCRIPT = Path(__file__).with_name("_engine_toy.py")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same kernels as the subprocesses, for bitwise comparisons
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: 2 epochs x 4 steps (batch 8, accum 2), dropout, shuffling."""
    out = tmp_path_factory.mktemp("reference")
    result = run_training(ToyTask(toy_config()), out, resume=None)
    return result, {k: v.clone() for k, v in result.model.state_dict().items()}


def assert_bitwise(state, reference_state):
    assert state.keys() == reference_state.keys()
    for key in state:
        assert torch.equal(state[key], reference_state[key]), key


def test_reference_run_outputs(reference):
    result, weights = reference
    out = result.output_dir
    assert (result.step, result.epoch, result.nonfinite_skipped) == (8, 2, 0)
    assert [s for s, _ in ckpt.list_checkpoints(out / "checkpoints")] == [6, 8]  # every 3 steps + end, keep 2
    assert_bitwise(load_file(out / "final" / "model.safetensors"), weights)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert {"loss", "lr", "samples_per_s", "epoch", "mse", "grad_norm"} <= records[0].keys()
    assert records[0]["lr"] == 0.0 and records[4]["lr"] == pytest.approx(0.05 * 16 / 256)  # warm-up, peak
    assert build(ToyConfig, yaml.safe_load((out / "config.yaml").read_text())) == toy_config()


def test_sigkilled_run_resumes_bitwise(reference, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # loss call 13 is the first micro-batch of step 7: the run dies after the step-6 checkpoint, mid-epoch
    killed = subprocess.run([sys.executable, str(TOY_SCRIPT), str(tmp_path), "--kill-at-call", "13"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "final").exists()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [3, 6]
    result = run_training(ToyTask(toy_config()), tmp_path, resume="auto")
    assert result.resumed_from == ckpt.checkpoint_path(tmp_path / "checkpoints", 6)
    assert_bitwise(result.model.state_dict(), reference[1])
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # the killed run's records after step 6 were dropped


def test_max_steps_stop_then_resume_bitwise(reference, tmp_path):
    first = run_training(ToyTask(toy_config(["train.max_steps=5"])), tmp_path, resume=None)
    assert first.step == 5 and first.last_checkpoint == ckpt.checkpoint_path(tmp_path / "checkpoints", 5)
    result = run_training(ToyTask(toy_config()), tmp_path, resume="auto")
    assert_bitwise(result.model.state_dict(), reference[1])


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_latest_checkpoint_uses_previous(reference, tmp_path, caplog, damage):
    cfg = toy_config(["train.checkpoint_every=2", "train.keep_last=3"])
    run_training(ToyTask(cfg), tmp_path, resume=None)
    latest = ckpt.checkpoint_path(tmp_path / "checkpoints", 8)
    data = bytearray(latest.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x55
    latest.write_bytes(bytes(data if damage == "flip" else data[:100]))
    with caplog.at_level(logging.WARNING):
        result = run_training(ToyTask(cfg), tmp_path, resume="auto")
    assert result.resumed_from == ckpt.checkpoint_path(tmp_path / "checkpoints", 6)
    assert "step_00000008.pt" in caplog.text and "falling back" in caplog.text
    assert_bitwise(result.model.state_dict(), reference[1])  # steps 7-8 redone identically
    ckpt.verify(latest)  # rewritten intact


def test_explicit_damaged_checkpoint_raises(tmp_path):
    run_training(ToyTask(toy_config(["train.max_steps=3"])), tmp_path, resume=None)
    path = ckpt.checkpoint_path(tmp_path / "checkpoints", 3)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="damaged"):
        run_training(ToyTask(toy_config()), tmp_path, resume=path)


def test_fresh_run_refuses_existing_checkpoints(tmp_path):
    run_training(ToyTask(toy_config(["train.max_steps=3"])), tmp_path, resume=None)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        run_training(ToyTask(toy_config()), tmp_path, resume=None)


def test_nonfinite_loss_raises_with_step(tmp_path):
    with pytest.raises(NonFiniteLossError) as info:  # loss call 5 = first micro-batch of step 3
        run_training(ToyTask(toy_config(), nan_calls={5}), tmp_path, resume=None)
    assert info.value.step == 3 and "step 3" in str(info.value)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == []


def test_nonfinite_loss_skipped_up_to_limit(tmp_path, caplog):
    cfg = toy_config(["train.max_nonfinite_skips=2"])
    with caplog.at_level(logging.WARNING):
        result = run_training(ToyTask(cfg, nan_calls={3, 10}), tmp_path / "a", resume=None)
    assert result.step == 8 and result.nonfinite_skipped == 2 and "step 2" in caplog.text
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    with pytest.raises(NonFiniteLossError) as info:
        run_training(ToyTask(cfg, nan_calls={3, 10, 16}), tmp_path / "b", resume=None)
    assert info.value.step == 8


@pytest.mark.parametrize("workers", [0, 1])
def test_failing_item_raises_naming_its_file(tmp_path, workers):
    with pytest.raises(DecodeError, match=r"clip5\.mp4.*truncated file"):
        run_training(ToyTask(toy_config([f"train.num_workers={workers}"]), broken={5}), tmp_path, resume=None)


def test_skipped_items_are_dropped_counted_and_listed(tmp_path):
    task = ToyTask(toy_config(), broken={5, 40}, on_error="skip", max_error_fraction=0.05)
    result = run_training(task, tmp_path, resume=None)
    assert result.step == 8
    # each epoch sees both broken items once: two batches are one sample short, nothing is substituted
    assert sorted(task.batch_sizes) == [7] * 4 + [8] * 12
    listed = [json.loads(line) for line in (tmp_path / "data_errors.jsonl").read_text().splitlines()]
    assert sorted((r["epoch"], r["index"], r["path"]) for r in listed) == \
        [(e, i, f"/data/clip{i}.mp4") for e in (0, 1) for i in (5, 40)]
    assert all(r["reason"] == "truncated file" for r in listed)


def test_too_many_failing_items_stop_the_run(tmp_path):
    task = ToyTask(toy_config(), broken={5, 40}, on_error="skip", max_error_fraction=0.02)  # 2 of 64 > 1.28
    with pytest.raises(DataError, match=r"2 of 64 items failed in epoch 0.*data_errors\.jsonl"):
        run_training(task, tmp_path, resume=None)


def test_training_lowers_the_loss_bf16_and_evaluates(tmp_path):
    cfg = toy_config(["train.precision=bf16", "train.base_lr=2.0", "train.epochs=6", "train.warmup_epochs=0",
                      "train.stream_ramp_epochs=0", "train.eval_every=3", "toy.dropout=0.0",
                      "train.checkpoint_every=0", "train.log_every=4"])
    task = ToyTask(cfg, with_eval=True)
    result = run_training(task, tmp_path, resume=None)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [r for r in records if "eval/mse" in r]
    assert losses[-1] < 0.7 * losses[0]
    assert task.evaluated == 2 and [r["step"] for r in evals] == [12, 24]
    assert result.eval_metrics["mse"] == evals[-1]["eval/mse"] == result.eval_report.metrics()["mse"]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [24]  # only at the end


def test_final_weights_of_a_plain_model_are_its_state_dict(tmp_path):
    run_training(ToyTask(toy_config(["train.max_steps=1"])), tmp_path, resume=None)
    final = tmp_path / "final"
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors"]  # no temporary left beside it
    assert set(load_file(str(final / "model.safetensors"))) == set(ToyTask(toy_config([])).build_model().state_dict())


def test_final_weights_of_an_avfusion_model_are_a_pretrained_directory(tmp_path):
    """An avfusion model gets weights and the configuration that rebuilds it (avfusion.save_pretrained)."""
    from avfusion.checkpoints import from_pretrained
    from avfusion.models import EarlyFusionEncoder

    encoder = EarlyFusionEncoder(image_size=(32, 32), audio_size=(32, 32), embed_dim=32, depth=2, num_heads=2,
                                 fusion_num_heads=2, num_fusion_tokens=(2, 1, 1))
    ToyTask(toy_config([])).save_final(encoder, tmp_path / "final")
    again = from_pretrained(tmp_path / "final")
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), again.state_dict().values()))


def test_fp16_needs_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="fp16"):
        run_training(ToyTask(toy_config(["train.precision=fp16"])), tmp_path, resume=None)


@pytest.mark.slow
def test_compiled_model_trains(tmp_path):
    cfg = toy_config(["train.compile=true", "train.max_steps=2", "toy.dropout=0.0"])
    result = run_training(ToyTask(cfg), tmp_path, resume=None)
    assert result.step == 2 and result.last_loss is not None and torch.isfinite(torch.tensor(result.last_loss))
