"""`avfusion pretrain` end to end on AV-Digits (in-process), the recipes, and the task's pieces."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from avfusion.cli import main
from avfusion.engine import load_config
from avfusion.engine.optim import peak_lr
from avfusion.randomness import sample_noise
from avfusion.tasks.pretrain import PretrainRecipe, PretrainTask

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "avdigits" / "pretrain_tiny.yaml")
# A smaller model and set for the tests that check mechanics rather than learning.
# 32-pixel canvases hold 2-3 digits only in the free layout (the grid layout needs 2 x 2 cells of 16 px each).
SMALL = ["data.size=32", "data.image_size=32", "data.layout=free", "model.embed_dim=32", "model.num_heads=2", "model.depth=2",
         "model.fusion_num_heads=2", "model.decoder_embed_dim=32", "model.decoder_depth=1",
         "model.decoder_num_heads=2", "train.batch_size=8", "train.eval_every=0", "train.progress=false",
         "train.log_every=1", "train.tensorboard=false"]


pytestmark = pytest.mark.usefixtures("one_thread")


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tiny_recipe_lowers_the_loss_and_reports_knn(tmp_path):
    # The recipe on fewer scenes and steps: 12 steps of 16 (one epoch), then the monitor. From random
    # streams (no stage 1), so at 10x the shipped lr: the shipped peak (1.5e-5) is for continuing from the
    # stage-1 streams, and 12 steps of it barely move the new decoder (5.47 -> 5.41 here).
    out = tmp_path / "run"
    code = main(["pretrain", TINY, "train.max_steps=12", "train.batch_size=16", "data.size=192", "train.base_lr=1.2e-3",
                 "data.eval_size=40", "train.log_every=1", "train.progress=false", "train.tensorboard=false",
                 "--output", str(out)])
    assert code == 0
    logged = records(out)
    losses = [r["loss"] for r in logged if "loss" in r]
    assert len(losses) == 12
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.85 * first, losses
    assert all(r["loss_image"] > 0 and r["loss_audio"] > 0 for r in logged if "loss" in r)
    evals = [r for r in logged if "eval/knn_N" in r]
    assert len(evals) == 1 and evals[0]["eval/knn_N"] == 40  # after epoch 1 (= the end: not repeated)
    for kind in ("image", "audio", "fusion"):
        for k in (1, 20):
            assert 0.0 <= evals[0][f"eval/knn_top1_{kind}@{k}"] <= 1.0
    assert (out / "config.yaml").is_file()
    from avfusion.checkpoints import from_pretrained
    model = from_pretrained(out / "final")
    assert model.task == "pretrain" and model.encoder.config.image_size == (96, 96)
    assert model.encoder.config.audio_size == (64, 64)


def test_resume_through_the_cli_is_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["pretrain", TINY, *SMALL, "train.max_steps=6", "--output", str(straight)]) == 0
    assert main(["pretrain", TINY, *SMALL, "train.max_steps=3", "train.checkpoint_every=2",
                 "--output", str(split)]) == 0
    # A directory with checkpoints is refused without --resume.
    assert main(["pretrain", TINY, *SMALL, "train.max_steps=6", "--output", str(split)]) == 1
    assert main(["pretrain", TINY, *SMALL, "train.max_steps=6", "--output", str(split), "--resume", "auto"]) == 0
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(split / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in records(split)] == [r["loss"] for r in records(straight)]


def test_unknown_keys_are_rejected_with_a_suggestion(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert main(["pretrain", TINY, "train.bach_size=4", "--output", str(tmp_path)]) == 1
    assert "did you mean 'train.batch_size'" in caplog.text
    with caplog.at_level(logging.ERROR):
        assert main(["pretrain", TINY, "model.embed_dimm=64", "--output", str(tmp_path)]) == 1
    assert "did you mean 'model.embed_dim'" in caplog.text
    assert not (tmp_path / "checkpoints").exists()
    with caplog.at_level(logging.ERROR):  # too few held-out items for k = 20: refused before training
        assert main(["pretrain", TINY, *SMALL, "train.eval_every=1", "data.eval_size=20", "--output",
                     str(tmp_path / "few")]) == 1
    assert "needs more than 20 held-out items" in caplog.text


def test_help_and_print_config(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--help"])
    assert exc.value.code == 0
    assert "--resume" in capsys.readouterr().out
    assert main(["pretrain", TINY, "train.seed=3", "--print-config"]) == 0
    assert "seed: 3" in capsys.readouterr().out


def test_masking_noise_is_per_sample():
    a = sample_noise(0, 2, torch.tensor([5, 9]), 16, stream=0)
    b = sample_noise(0, torch.tensor([2, 2, 2]), torch.tensor([9, 1, 5]), 16, stream=0)
    assert torch.equal(a[0], b[2]) and torch.equal(a[1], b[0])  # batch composition does not matter
    assert not torch.equal(a, sample_noise(0, 3, torch.tensor([5, 9]), 16, stream=0))  # new epoch, new masks
    assert not torch.equal(a, sample_noise(0, 2, torch.tensor([5, 9]), 16, stream=1))  # audio != image
    assert not torch.equal(a, sample_noise(1, 2, torch.tensor([5, 9]), 16, stream=0))  # seed


def test_stream_init_from_mae_files_and_the_lr_ramp(tmp_path):
    shapes = [o for o in SMALL if o.startswith(("model.", "data."))]
    cfg = load_config(PretrainRecipe, TINY, shapes)
    donor = PretrainTask(cfg).build_model().encoder.image
    mae = {"model": {"cls_token": torch.zeros(1, 1, 32), "pos_embed": torch.zeros(1, 5, 32),
                     "decoder_embed.weight": torch.zeros(2, 2),
                     **{k: v + 1.0 for k, v in donor.state_dict().items() if k != "pos_embed"}}}
    torch.save(mae, tmp_path / "mae.pth")
    cfg.model.image_init = str(tmp_path / "mae.pth")
    task = PretrainTask(cfg)
    model = task.build_model()
    for key, value in model.encoder.image.state_dict().items():
        if key != "pos_embed":
            assert torch.equal(value, mae["model"][key]), key
    hints = task.param_hints(model)
    assert hints.pretrained("encoder.image.blocks.0.attn.qkv.weight")
    assert not hints.pretrained("encoder.audio.blocks.0.attn.qkv.weight")
    assert not hints.pretrained("encoder.fusion_tokens")
    plain = PretrainTask(load_config(PretrainRecipe, TINY, shapes))
    assert plain.param_hints(plain.build_model()).pretrained is None


@pytest.mark.parametrize("name, accum, attn, mlp", [("vggsound_vitb", 1, 0.25, 1.0), ("audioset2m_vitb", 4, 1.0, 4.0)])
def test_official_recipes(name, accum, attn, mlp):
    from avfusion.tasks.common import encoder_config_for
    cfg = load_config(PretrainRecipe, ROOT / "configs" / "pretrain" / f"{name}.yaml")
    t = cfg.train
    assert (t.epochs, t.warmup_epochs, t.batch_size, t.accum_steps, t.base_lr) == (200, 40, 64, accum, 1.5e-4)
    assert (tuple(t.betas), t.weight_decay, t.stream_ramp_epochs) == ((0.9, 0.95), 0.05, 100)
    assert peak_lr(t, world_size=8) == pytest.approx(1.5e-4 * 64 * accum * 8 / 256)
    m = cfg.model
    assert (m.image_mask_ratio, m.audio_mask_ratio, m.decoder_embed_dim, m.decoder_depth) == (0.75, 0.8, 512, 8)
    assert m.image_init and m.audio_init
    enc = encoder_config_for(m, cfg.data)
    assert (enc.embed_dim, enc.depth, enc.num_fusion_tokens) == (768, 12, (16, 8, 8))
    assert (enc.fusion_attn_ratio, enc.fusion_mlp_ratio, enc.fusion_type) == (attn, mlp, "factorized")
    assert (enc.image_size, enc.audio_size) == ((224, 224), (128, 192))


def test_two_processes_equal_one_with_double_batch(tmp_path):
    """torchrun with 2 gloo processes x batch 4 follows 1 process x batch 8 (masks depend on the sample only)."""
    import os
    import subprocess
    import sys

    common = [TINY, *SMALL, "train.max_steps=3", "train.eval_every=1", "data.eval_size=24"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "avfusion"]
    two = subprocess.run([*launch, "pretrain", *common, "train.batch_size=4", "--output", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert main(["pretrain", *common, "train.batch_size=8", "--output", str(tmp_path / "one")]) == 0
    a, b = records(tmp_path / "one"), records(tmp_path / "two")
    for key in ("loss", "loss_image", "loss_audio"):  # every logged number is the all-reduced one, not rank 0's
        assert [r[key] for r in a if key in r] == pytest.approx([r[key] for r in b if key in r], rel=1e-5), key
    assert {k: v for k, v in a[-1].items() if k.startswith("eval/")} == \
        {k: v for k, v in b[-1].items() if k.startswith("eval/")}  # monitor gathered over both ranks
    one, two_w = load_file(tmp_path / "one" / "final" / "model.safetensors"), \
        load_file(tmp_path / "two" / "final" / "model.safetensors")
    scale = max(v.abs().max().item() for v in one.values())
    # 2e-5: the tiny recipe's raw-pixel targets (norm_pix_loss: false) give larger losses than normalised ones,
    # and the two reduction orders of the gradient then differ by ~1.2e-5 of the largest weight after 3 steps.
    assert max((one[k] - two_w[k]).abs().max().item() for k in one) <= 2e-5 * scale


def test_a_broken_clip_is_skipped_and_listed_or_stops_the_run(tmp_path, caplog):
    from tests.test_task_separate import _clip_manifest

    root = _clip_manifest(tmp_path / "clips")
    (root / "a1.wav").write_bytes(b"not audio" * 100)            # a train item that cannot be decoded
    common = ["pretrain", TINY, *SMALL, "data.name=manifest", f"data.root={root}", "data.size=null",
              "data.eval_size=null", "data.window=1.0", "train.batch_size=2", "train.max_steps=2"]
    with caplog.at_level(logging.ERROR):
        assert main([*common, "--output", str(tmp_path / "strict")]) == 1
    assert "a1.wav: cannot open container" in caplog.text and "[item 'f1.png' of manifest/train]" in caplog.text
    assert main([*common, "data.on_error=skip", "data.max_error_fraction=0.5",
                 "--output", str(tmp_path / "skip")]) == 0
    listed = [json.loads(line) for line in (tmp_path / "skip" / "data_errors.jsonl").read_text().splitlines()]
    assert listed and {Path(r["path"]).name for r in listed} == {"a1.wav"}
    assert (tmp_path / "skip" / "final" / "model.safetensors").is_file()
