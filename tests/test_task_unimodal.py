"""Stage 1, unimodal initialisation: `avfusion train unimodal`, its stream file, the fresh pools."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avfusion.checkpoints import load_stream_init
from avfusion.cli import main
from avfusion.engine import load_config
from avfusion.errors import ConfigError
from avfusion.models import EarlyFusionEncoder
from avfusion.tasks.common import encoder_config_for
from avfusion.tasks.unimodal import STREAM_FILE, UnimodalRecipe, UnimodalSamples, UnimodalTask

ROOT = Path(__file__).resolve().parents[1]
IMAGE = str(ROOT / "configs" / "avdigits" / "unimodal_image.yaml")
AUDIO = str(ROOT / "configs" / "avdigits" / "unimodal_audio.yaml")
QUIET = ["train.progress=false", "train.tensorboard=false", "train.log_every=1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_audio_stream_learns_the_spoken_digits_alone(tmp_path):
    """The shipped recipe, shortened: 60 steps of 32 recordings leave chance (0.10) on held-out takes,
    and the final directory holds the stream in the official MAE layout, loadable by model.audio_init."""
    out = tmp_path / "audio"
    assert main(["train", "unimodal", AUDIO, "data.size=960", "data.eval_size=100", "train.epochs=2",
                 "train.batch_size=32", "train.eval_every=2", "train.warmup_epochs=0.3", "train.lr=2e-3", *QUIET,
                 "--output", str(out)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    (row,) = report["rows"]
    assert row["subject"] == "audio" and row["metric"] == "top1" and row["n"] == 100
    assert row["value"] > 0.3, row
    losses = [r["loss"] for r in _records(out) if "loss" in r]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    state = torch.load(out / "final" / STREAM_FILE, weights_only=True)
    assert set(state) == {"model"}
    assert not any(k.startswith(("head", "decoder")) for k in state["model"])  # the head is discarded
    cfg = load_config(UnimodalRecipe, AUDIO)
    encoder = EarlyFusionEncoder(encoder_config_for(cfg.model, cfg.data))
    load_stream_init(encoder.audio, out / "final" / STREAM_FILE)
    for name, value in state["model"].items():
        assert torch.equal(encoder.audio.state_dict()[name], value), name


def test_mae_objective_reconstructs_its_own_patches(tmp_path):
    out = tmp_path / "image_mae"
    small = ["data.image_size=32", "model.embed_dim=32", "model.num_heads=2", "model.depth=2", "model.fusion_num_heads=2",
             "unimodal.decoder_embed_dim=32", "unimodal.decoder_num_heads=2", "unimodal.decoder_depth=1",
             "unimodal.max_digits=1"]  # one 32-pixel glyph fits a 32-pixel canvas
    args = ["train", "unimodal", IMAGE, "unimodal.objective=mae", *small, "data.size=64", "data.eval_size=16",
            "train.epochs=3", "train.batch_size=16", "train.eval_every=3", "train.warmup_epochs=0", "train.lr=3e-3",
            *QUIET]
    assert main([*args, "--output", str(out)]) == 0
    losses = [r["loss"] for r in _records(out) if "loss" in r]
    assert len(losses) == 12 and sum(losses[-3:]) < 0.8 * sum(losses[:3])
    (row,) = json.loads((out / "evaluation.json").read_text())["rows"]
    assert row["metric"] == "mae_loss" and row["n"] == 16 and row["value"] > 0
    # masking noise is a function of (seed, epoch, index): the same command gives the same numbers
    again = tmp_path / "again"
    assert main([*args, "--output", str(again)]) == 0
    assert [r["loss"] for r in _records(again) if "loss" in r] == losses
    state = torch.load(out / "final" / STREAM_FILE, weights_only=True)["model"]
    assert "patch_embed.proj.weight" in state and state["patch_embed.proj.weight"].shape[1] == 3


def test_pools_are_fresh_every_epoch_and_fixed_for_evaluation():
    cfg = load_config(UnimodalRecipe, IMAGE)
    train = UnimodalSamples("image", "train", cfg.data, seed=0, size=4, train=True)
    first = train[1]["input"].clone()
    train.set_epoch(1)
    assert not torch.equal(train[1]["input"], first)  # epoch 1 draws canvases 4..7
    train.set_epoch(0)
    assert torch.equal(train[1]["input"], first)
    test = UnimodalSamples("audio", "test", cfg.data, seed=0, size=4, train=False)
    before = test[2]["input"].clone()
    test.set_epoch(3)
    assert torch.equal(test[2]["input"], before) and test[2]["input"].shape == (1, 64, 64)
    assert train[0]["input"].shape == (3, 96, 96) and 0 <= train[0]["label"] < 10


def test_unimodal_needs_the_avdigits_pools():
    cfg = load_config(UnimodalRecipe, IMAGE, ["data.name=vggsound", "data.size=null", "data.eval_size=null"])
    with pytest.raises(ConfigError, match="image_init"):
        UnimodalTask(cfg).train_dataset()
    with pytest.raises(ConfigError, match="modality"):
        load_config(UnimodalRecipe, IMAGE, ["unimodal.modality=video"])


@pytest.mark.parametrize("task,recipe", [("pretrain", "pretrain_tiny.yaml"), ("classify", "classify_finetune.yaml"),
                                         ("localize", "localize.yaml"), ("separate", "separate.yaml"),
                                         ("segment", "segment.yaml")])
def test_every_task_puts_its_initialised_streams_on_the_lr_ramp(tmp_path, task, recipe):
    """model.image_init marks the image stream as pretrained (train.stream_ramp_epochs), in every task;
    localisation and segmentation used to leave it unmarked, so the ramp silently did nothing there."""
    from avfusion.tasks.registry import build_task, get_recipe

    cfg = load_config(UnimodalRecipe, IMAGE)
    stream = EarlyFusionEncoder(encoder_config_for(cfg.model, cfg.data)).image
    torch.save({"model": stream.state_dict()}, tmp_path / STREAM_FILE)
    recipe_cfg = load_config(get_recipe(task), str(ROOT / "configs" / "avdigits" / recipe),
                             [f"model.image_init={tmp_path / STREAM_FILE}"])
    t = build_task(task, recipe_cfg)
    hints = t.param_hints(t.build_model())
    assert hints.pretrained is not None
    assert hints.pretrained("encoder.image.blocks.0.attn.qkv.weight")
    assert not hints.pretrained("encoder.audio.blocks.0.attn.qkv.weight")


def test_patch_targets_mark_the_digit_under_each_patch_centre():
    """A 3 x 3 grid of 16-pixel patches (centres at 8, 24, 40): a digit 7 boxed over pixels 16..47 holds
    the centres of the bottom-right 2 x 2 patches; a digit 2 over 0..20 x 0..15 the top-left one only;
    a padded slot (-1) marks nothing; everything else is background (10)."""
    from avfusion.tasks.unimodal import patch_targets

    boxes = torch.tensor([[[16, 16, 48, 48], [0, 0, 21, 16], [0, 0, 48, 48]]])
    classes = torch.tensor([[7, 2, -1]])
    got = patch_targets(boxes, classes, (3, 3), 16, 10)
    assert got.tolist() == [[2, 10, 10, 10, 7, 7, 10, 7, 7]]


def test_glyph_canvases_with_several_digits():
    from avfusion.data.avdigits import render_glyph
    from avfusion.errors import DataError

    one = render_glyph("train", 5)
    assert one["num_digits"] == 1 and (render_glyph("train", 5, max_digits=1)["image"] == one["image"]).all()
    counts = {render_glyph("train", i, max_digits=3)["num_digits"] for i in range(30)}
    assert counts == {1, 2, 3}
    with pytest.raises(DataError, match="max_digits"):
        render_glyph("train", 0, max_digits=4)


def test_the_image_stream_learns_which_digit_lies_under_each_patch(tmp_path):
    """pool=patch on canvases of 1-3 digits: every token names the digit under it. 120 steps of 32
    leave chance (0.10) on held-out canvases' digit tokens; the report has no input-level top-1 (a canvas
    of several digits has no one label)."""
    out = tmp_path / "image"
    assert main(["train", "unimodal", IMAGE, "unimodal.pool=patch", "unimodal.max_digits=3", "data.size=1920",
                 "data.eval_size=100", "train.epochs=2", "train.batch_size=32", "train.eval_every=2",
                 "train.warmup_epochs=0.3", "train.lr=2e-3", *QUIET, "--output", str(out)]) == 0
    (row,) = json.loads((out / "evaluation.json").read_text())["rows"]
    assert row["subject"] == "image" and row["metric"] == "patch_top1", row
    assert row["value"] > 0.12, row  # measured 0.174; a background-only head scores 0, uniform guessing 1/11
    with pytest.raises(ConfigError, match="image stream only"):
        load_config(UnimodalRecipe, AUDIO, ["unimodal.pool=patch"])
