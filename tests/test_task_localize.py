"""Localisation: read-outs, the contrastive loss, hand-made cIoU cases, and train / evaluate on AV-Digits."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avfusion.checkpoints import save_pretrained
from avfusion.cli import main
from avfusion.engine import load_config
from avfusion.errors import CheckpointError, ConfigError
from avfusion.metrics.localization import ciou
from avfusion.models import EarlyFusionEncoder, encoder_config
from avfusion.models.localization import (ContrastiveLocalizer, attention_map, band_info_nce, info_nce, mil_scores,
                                          select_blocks)
from avfusion.tasks.annotated import AnnotatedAVDigits, boxes_mask
from avfusion.models.localization import heatmaps
from avfusion.tasks.localize import LocalizeRecipe, LocalizeTask, random_digit_heatmap, to_pixels

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "configs/avdigits/localize.yaml")
FAST = ["data.size=16", "data.eval_size=8", "train.batch_size=8", "train.max_steps=2", "train.progress=false",
        "train.tensorboard=false", "train.eval_every=1", "localize.negatives=3"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_encoder(**kw) -> EarlyFusionEncoder:
    torch.manual_seed(0)
    cfg = encoder_config("tiny", image_size=(64, 64), audio_size=(64, 64), embed_dim=128, depth=4, num_heads=4,
                         num_fusion_tokens=(4, 2, 2), fusion_num_heads=4, **kw)
    return EarlyFusionEncoder(cfg)


def inputs(b: int = 4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 3, 64, 64, generator=g), torch.randn(b, 1, 64, 64, generator=g)


# ----------------------------------------------------------------------------- read-outs
@pytest.mark.parametrize("fusion_type", ["factorized", "dense", "token"])
def test_attention_readout_of_a_random_encoder_is_a_distribution_on_the_grid(fusion_type):
    encoder = tiny_encoder(fusion_type=fusion_type).eval()
    image, audio = inputs()
    with torch.no_grad():
        maps = heatmaps(encoder, image, audio, "all")
    assert set(maps) == {"attention"}
    assert maps["attention"].shape == (4, 4, 4)
    assert torch.allclose(maps["attention"].sum((1, 2)), torch.ones(4), atol=1e-5)
    assert (maps["attention"] >= 0).all()


def test_attention_map_averages_the_selected_blocks_and_fusion_tokens():
    a = torch.zeros(1, 2, 4)
    a[0, 0, 0] = a[0, 1, 1] = 1.0  # block 0: token 0 -> patch 0, token 1 -> patch 1
    b = torch.zeros(1, 2, 4)
    b[0, :, 3] = 1.0  # block 1: both tokens -> patch 3
    assert torch.equal(attention_map([a, b], (2, 2), "last"), torch.tensor([[[0.0, 0.0], [0.0, 1.0]]]))
    assert torch.allclose(attention_map([a, b], (2, 2), "all"), torch.tensor([[[0.25, 0.25], [0.0, 0.5]]]))
    assert torch.equal(attention_map([a, b], (2, 2), [0]), attention_map([a, b], (2, 2), [-2]))


def test_block_selection_rules():
    assert select_blocks(4, "last") == [3]
    assert select_blocks(4, "all") == [0, 1, 2, 3]
    assert select_blocks(4, [-1, 0, 3]) == [0, 3]
    for bad in ("first", [4], []):
        with pytest.raises(ConfigError):
            select_blocks(4, bad)
    with pytest.raises(ConfigError, match="no fusion block"):
        select_blocks(0, "last")


def test_contrastive_localizer_heatmap_shape_and_cosine_range():
    model = ContrastiveLocalizer(tiny_encoder(), proj_dim=16, hidden_dim=32).eval()
    image, audio = inputs()
    with torch.no_grad():
        maps = heatmaps(model, image, audio)
    assert set(maps) == {"contrastive", "attention"}
    assert maps["contrastive"].shape == (4, 4, 4)
    assert maps["contrastive"].abs().max() <= 1.0 + 1e-5


def test_frozen_encoder_gets_no_gradient_and_stays_in_eval_mode():
    model = ContrastiveLocalizer(tiny_encoder(), proj_dim=16, hidden_dim=0, freeze_encoder=True).train()
    assert not model.encoder.training and model.image_proj.training
    image, audio = inputs()
    model(image, audio, pairing="cross").loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.query_proj[-1].weight.grad is not None
    tuned = ContrastiveLocalizer(tiny_encoder(), proj_dim=16, hidden_dim=0, freeze_encoder=False).train()
    assert tuned.encoder.training
    tuned(image, audio, pairing="cross", negatives=1).loss.backward()
    assert tuned.encoder.image.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- losses
def test_mil_scores_take_the_best_patch():
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    patches = torch.tensor([[[0.5, 0.0], [0.2, 0.9]], [[1.0, 0.0], [0.0, -1.0]]])  # (2 images, 2 patches, 2)
    assert torch.equal(mil_scores(query, patches), torch.tensor([[0.5, 1.0], [0.9, 0.0]]))


def test_mil_scores_top_k_average_the_best_patches():
    query = torch.tensor([[1.0, 0.0]])
    patches = torch.tensor([[[0.5, 0.0], [0.2, 0.9], [0.9, 0.1]]])  # scores 0.5, 0.2, 0.9
    assert torch.allclose(mil_scores(query, patches, top_k=2), torch.tensor([[0.7]]))
    assert torch.allclose(mil_scores(query, patches, top_k=5), torch.tensor([[1.6 / 3]]))  # capped at N


def test_the_localiser_contrasts_with_its_top_k_pooling(tmp_path):
    """mil_top_k reaches the loss (neutral and cross pairing alike) and survives save/load."""
    from avfusion.checkpoints import from_pretrained, save_pretrained

    torch.manual_seed(0)
    model = ContrastiveLocalizer(tiny_encoder(), proj_dim=16, hidden_dim=0, neutral_partner=True, mil_top_k=3).eval()
    image, audio = inputs()
    with torch.no_grad():
        out = model(image, audio, pairing="joint")
    assert torch.allclose(out.loss, info_nce(mil_scores(out.query, out.patches, 3), model.temperature), atol=1e-6)
    assert not torch.allclose(out.loss, info_nce(mil_scores(out.query, out.patches), model.temperature), atol=1e-4)
    save_pretrained(model, tmp_path / "loc")
    assert from_pretrained(tmp_path / "loc").mil_top_k == 3
    with pytest.raises(ConfigError, match="mil_top_k"):
        ContrastiveLocalizer(tiny_encoder(), mil_top_k=0)


def test_band_info_nce_with_all_negatives_equals_the_full_matrix_loss():
    torch.manual_seed(0)
    b = 5
    full = torch.randn(b, b)  # full[i, j]: audio i against image j
    band = torch.stack([full[torch.arange(b), (torch.arange(b) + k) % b] for k in range(b)], 1)
    assert torch.allclose(band_info_nce(band, 0.1), info_nce(full, 0.1))
    # hand-computed: two pairs, perfect separation by 1 at temperature 1
    loss = info_nce(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)))


def test_cross_pairing_scores_the_true_pairs_like_a_plain_forward():
    model = ContrastiveLocalizer(tiny_encoder(), proj_dim=16, hidden_dim=32, freeze_encoder=False).eval()
    image, audio = inputs()
    with torch.no_grad():
        plain = model(image, audio)
        cross = model(image, audio, pairing="cross", negatives=2)
        joint = model(image, audio, pairing="joint")
    assert torch.allclose(plain.heatmap, cross.heatmap, atol=1e-5)
    assert torch.allclose(plain.heatmap, joint.heatmap, atol=1e-5)
    assert cross.loss.ndim == 0 and torch.isfinite(cross.loss) and torch.isfinite(joint.loss)
    with pytest.raises(ConfigError):
        model(image, audio, pairing="pairs")


# ----------------------------------------------------------------------------- scoring
def test_hand_made_heatmap_inside_the_box_scores_as_computed_by_hand():
    gt = boxes_mask(np.array([10, 10, 30, 20]), 64).astype(float)  # 20 x 10 box: 200 pixels
    exact = gt.copy()
    assert ciou(exact, gt, "fixed@0.5") == 1.0
    wide = boxes_mask(np.array([10, 10, 30, 30]), 64).astype(float)  # the box plus 200 pixels below it
    assert ciou(wide, gt, "fixed@0.5") == pytest.approx(200 / (200 + 200))
    # a 4x4 patch heatmap peaking on the patch that holds the box, against one peaking elsewhere
    box = boxes_mask(np.array([16, 16, 32, 32]), 64).astype(float)
    peak_in, peak_out = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
    peak_in[0, 1, 1] = peak_out[0, 3, 0] = 1.0
    inside = ciou(to_pixels(peak_in, 64)[0], box, "fixed@0.5")
    assert ciou(to_pixels(peak_out, 64)[0], box, "fixed@0.5") == 0.0
    # by hand: the upsampled peak falls off linearly over 16 pixels from the patch centre (23.5, 23.5);
    # after min-max normalisation (peak pixel (1 - 0.5/16)^2) the region above 0.5 lies inside the box
    d = np.abs(np.arange(64) + 0.5 - 24.0)
    tent = np.clip(1 - d / 16, 0, None)
    region = np.outer(tent, tent) / (15.5 / 16) ** 2 > 0.5
    assert not region[box == 0].any()
    assert inside == pytest.approx(region.sum() / box.sum()) and inside > 0.6


def test_random_digit_baseline_is_deterministic_and_picks_a_visible_digit():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    picks = {random_digit_heatmap(boxes, 2, 32, seed=0, index=i).sum() for i in range(20)}
    assert picks == {100.0}  # both visible digits have 100 pixels; the padding row is never drawn
    a = random_digit_heatmap(boxes, 2, 32, seed=0, index=3)
    assert np.array_equal(a, random_digit_heatmap(boxes, 2, 32, seed=0, index=3))
    chosen = {int(np.argmax(random_digit_heatmap(boxes, 2, 32, seed=0, index=i).ravel())) for i in range(20)}
    assert len(chosen) == 2


def test_annotated_scenes_carry_boxes_and_masks_on_the_canvas():
    cfg = load_config(LocalizeRecipe, RECIPE, FAST)
    ds = AnnotatedAVDigits("test", cfg.data, size=3)
    item = ds[1]
    s = cfg.data.image_size
    assert item["image"].shape == (3, s, s) and item["audio"].shape == (1, 64, 64)
    x0, y0, x1, y1 = item["box"].long().tolist()
    assert item["mask"].shape == (s, s) and item["mask"].any()
    assert not item["mask"][:y0].any() and not item["mask"][y1:].any()  # the stroke lies in its box
    assert (item["all_digits"] | item["mask"]).equal(item["all_digits"])


# ----------------------------------------------------------------------------- task, end to end
def test_train_and_evaluate_on_avdigits_through_the_commands(tmp_path, capsys):
    run = tmp_path / "loc"
    assert main(["train", "localize", RECIPE, *FAST, "--output", str(run)]) == 0
    rows = json.loads((run / "evaluation.json").read_text())["rows"]
    subjects = {r["subject"] for r in rows}
    assert subjects == {"contrastive", "attention", "center", "full", "random_digit"}
    protocols = {r["protocol"] for r in rows}
    assert protocols == {"ciou/box/fixed@0.5", "ciou/box/median"}
    assert all(r["n"] == 8 for r in rows)
    capsys.readouterr()
    assert main(["evaluate", "localize", RECIPE, *FAST, "--checkpoint", str(run / "final"),
                 "--output", str(tmp_path / "eval")]) == 0
    table = capsys.readouterr().out
    assert "ciou/box/fixed@0.5" in table and "random_digit" in table
    again = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["rows"]
    assert {(r["subject"], r["metric"], r["protocol"]): r["value"] for r in again} == \
        {(r["subject"], r["metric"], r["protocol"]): r["value"] for r in rows}


def test_attention_readout_evaluates_a_random_encoder_and_refuses_training(tmp_path):
    cfg = load_config(LocalizeRecipe, RECIPE, [*FAST, "localize.readout=attention"])
    task = LocalizeTask(cfg)
    model = task.build_model().eval()
    assert isinstance(model, EarlyFusionEncoder)
    report = task.evaluate(model, DataLoader(task.eval_dataset(), batch_size=4))
    row = report.rows[0]
    assert (row.subject, row.protocol, row.n) == ("attention", "ciou/box/fixed@0.5", 8)
    with pytest.raises(ConfigError, match="training-free"):
        task.train_dataset()
    save_pretrained(model, tmp_path / "enc")
    assert isinstance(task.model_for_evaluation(str(tmp_path / "enc")), EarlyFusionEncoder)
    contrastive = load_config(LocalizeRecipe, RECIPE, FAST)
    with pytest.raises(CheckpointError, match="no contrastive"):
        LocalizeTask(contrastive).model_for_evaluation(str(tmp_path / "enc"))


def _flickr(root: Path) -> Path:
    """Flickr-SoundNet layout with one clip annotated by two overlapping boxes (two annotators)."""
    from tests.indexes_media import write

    (root / "flickr_test.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "flickr_test.csv").write_text("clip1\n")
    write(root / "frames" / "clip1.jpg")
    write(root / "audio" / "clip1.wav")
    boxes = "".join(f"<object><bbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bbox>"
                    "</object>" for x0, y0, x1, y1 in ((0, 0, 128, 128), (64, 64, 128, 128)))
    (root / "Annotations").mkdir()
    (root / "Annotations" / "clip1.xml").write_text(f"<annotation>{boxes}</annotation>")
    return root


def test_flickr_test_set_consensus_ground_truth_and_evaluation(tmp_path):
    root = _flickr(tmp_path / "flickr")
    over = [*FAST, "localize.readout=attention", "localize.eval_dataset=flickr", f"localize.eval_root={root}",
            "localize.gt_size=32", "localize.binarize=[median]"]
    cfg = load_config(LocalizeRecipe, RECIPE, over)
    task = LocalizeTask(cfg)
    data = task.eval_dataset()
    item = data[0]
    size = cfg.data.image_size
    assert item["image"].shape == (3, size, size) and item["audio"].shape == (1, 64, 64)
    gt = item["gt"]  # boxes scaled 32/256: [0, 16) one annotator (0.5), [8, 16) both (1.0)
    assert gt[0, 0] == 0.5 and gt[12, 12] == 1.0 and gt[20, 20] == 0.0
    assert gt.sum() == pytest.approx(0.5 * (16 * 16 - 8 * 8) + 8 * 8)
    report = task.evaluate(task.build_model().eval(), DataLoader(data, batch_size=1))
    row = report.get("attention", "AP50")
    assert (row.protocol, row.n) == ("ciou/consensus/median", 1)
    assert {r.subject for r in report.rows} == {"attention", "center", "full"}


def test_vggss_entry_left_without_box_scores_zero_and_is_reported(tmp_path):
    """Two entries of the released vggss.json, verbatim: one keeps a box, one has only a corrupt box."""
    from tests.indexes_media import write

    root = tmp_path / "vggss"
    root.mkdir()
    (root / "vggss.json").write_text(
        '[{"file": "Db6Hjt0x28k_000056", "class": "playing timbales", "bbox": [[0.384375, 0.859375, 0.696875, '
        '-2.8823037615171176e+16], [0.05, 0.35625, 0.753125, 0.98125]]}, {"file": "MKC9LvRivTM_000030", "class": '
        '"playing french horn", "bbox": [[0.396875, 0.6625, -2.8823037615171176e+16, 0.984375]]}]')
    for fid in ("Db6Hjt0x28k_000056", "MKC9LvRivTM_000030"):
        write(root / "frames" / f"{fid}.jpg")
        write(root / "audio" / f"{fid}.wav")
    over = [*FAST, "localize.readout=attention", "localize.eval_dataset=vggss", f"localize.eval_root={root}",
            "localize.gt_size=32", "localize.binarize=[median]"]
    task = LocalizeTask(load_config(LocalizeRecipe, RECIPE, over))
    data = task.eval_dataset()
    assert data[1]["gt"].sum() == 0 and data[0]["gt"].sum() > 0
    report = task.evaluate(task.build_model().eval(), DataLoader(data, batch_size=1))
    full = report.get("full", "mean_ciou")  # the whole image: cIoU = |G| / (32 * 32) for the first, 0 for the second
    assert full.n == 2 and full.value == pytest.approx(float(data[0]["gt"].sum()) / (32 * 32) / 2)
    assert report.meta["items_without_box_scored_0"] == 1
    assert "entries left with no box" in report.meta["annotation_file_notes"]


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(tmp_path):
    """13 test scenes, batch 4, 2 ranks (uneven): every scene scored once, the same numbers as 1 process."""
    import os
    import subprocess
    import sys

    from avfusion.tasks.evaluation import EvaluationReport

    save_pretrained(tiny_encoder(), tmp_path / "enc")
    common = ["evaluate", "localize", RECIPE, "localize.readout=attention", "data.eval_size=13", "train.batch_size=4",
              "--checkpoint", str(tmp_path / "enc")]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "avfusion", *common, "--output", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert main([*common, "--output", str(tmp_path / "one")]) == 0
    one, two = (EvaluationReport.read(tmp_path / d / "evaluation.json") for d in ("one", "two"))
    assert two.meta["processes"] == 2 and all(r.n == 13 for r in two.rows)
    assert {(r.subject, r.metric, r.protocol): r.value for r in two.rows} == \
        pytest.approx({(r.subject, r.metric, r.protocol): r.value for r in one.rows}, abs=1e-9)


def test_neutral_partner_scores_every_pair_without_the_partner():
    model = ContrastiveLocalizer(tiny_encoder(), proj_dim=16, hidden_dim=0, freeze_encoder=False,
                                 neutral_partner=True).eval()
    image, audio = inputs()
    with torch.no_grad():
        out = model(image, audio, pairing="cross", return_attention=True)
        other_audio = model(image, audio.flip(0))
    # the patches never see the partner's audio, the query never sees the partner's image
    assert torch.allclose(out.patches, other_audio.patches, atol=1e-5)
    assert torch.allclose(out.loss, info_nce(mil_scores(out.query, out.patches), model.temperature), atol=1e-6)
    assert out.image_attention is not None and model.options["neutral_partner"] is True


def test_the_encoder_of_a_fine_tuned_classifier_initialises_the_localiser(tmp_path):
    """model.pretrained accepts any save_pretrained directory holding an encoder, a classifier's included."""
    from avfusion.checkpoints import from_pretrained, save_pretrained
    from avfusion.models import build_model

    classifier = build_model("classify", tiny_encoder().config, num_classes=10)
    with torch.no_grad():
        for p in classifier.encoder.parameters():
            p.add_(0.01)  # weights no fresh encoder has
    save_pretrained(classifier, tmp_path / "cls")
    recipe = load_config(LocalizeRecipe, RECIPE, ["data.image_size=64", f"model.pretrained={tmp_path / 'cls'}",
                                                  "model.neutral_partner=true", "model.freeze_encoder=false"])
    model = LocalizeTask(recipe).build_model()
    want = classifier.encoder.state_dict()
    for key, value in model.encoder.state_dict().items():
        if not key.endswith("pos_embed"):
            assert torch.equal(value, want[key]), key
    save_pretrained(model, tmp_path / "loc")
    again = from_pretrained(tmp_path / "loc")
    assert again.options["neutral_partner"] is True
    for key, value in again.encoder.state_dict().items():
        assert torch.equal(value, model.encoder.state_dict()[key]), key


def test_evaluation_is_strict_even_when_training_skips_bad_clips(tmp_path):
    """data.on_error: skip is a training policy; a test clip that cannot be decoded stops the evaluation and
    names the file (it used to come back as an all-zero item scored as skipped)."""
    from avfusion.errors import DecodeError

    root = _flickr(tmp_path / "flickr")
    (root / "audio" / "clip1.wav").write_bytes(b"not audio" * 100)
    over = [*FAST, "localize.readout=attention", "localize.eval_dataset=flickr", f"localize.eval_root={root}",
            "localize.gt_size=32", "localize.binarize=[median]", "data.on_error=skip"]
    cfg = load_config(LocalizeRecipe, RECIPE, over)
    with pytest.raises(DecodeError, match="clip1.wav"):
        LocalizeTask(cfg).eval_dataset()[0]
