"""Segmentation: per-clip scoring, AV-Digits baselines by hand, AVSBench samples, train / evaluate end to end."""
from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avfusion.checkpoints import save_pretrained
from avfusion.cli import main
from avfusion.engine import load_config
from avfusion.metrics.segmentation import avsbench_video, official_frame, semantic_frame
from avfusion.tasks.segment import SegmentRecipe, SegmentTask, binary_scores, video_scores
from avfusion.tasks.segment_data import resize_crop_geometry
from tests.indexes_media import write

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "configs/avdigits/segment.yaml")
FAST = ["data.size=8", "data.eval_size=4", "train.batch_size=4", "train.max_steps=1", "train.progress=false",
        "train.tensorboard=false", "train.eval_every=1"]


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- scoring pieces
def test_binary_scores_by_hand():
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True  # 4 pixels
    prob = np.zeros((4, 4))
    prob[:2, :] = 0.9  # predicts 8 pixels, 4 of them right
    s = binary_scores(prob, gt)
    assert s["fg_iou"] == pytest.approx(4 / 8)
    p, r = 0.5, 1.0
    assert s["F"] == pytest.approx(1.3 * p * r / (0.3 * p + r))


def test_video_scores_binary_and_semantic_call_the_protocols_on_every_frame():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 8, 8)
    target = (torch.rand(3, 8, 8) > 0.5).float()
    target[1] = 0  # a frame without foreground: skipped by `official`, scored by `avsbench`
    out = video_scores(logits, target, background=0)
    prob, gt = torch.sigmoid(logits[:, 0]).numpy(), target.numpy() > 0.5
    assert out["avsbench"] == avsbench_video(prob, gt)
    assert out["official"] == [official_frame(p, g) for p, g in zip(prob, gt)]
    assert "semantic" not in out
    sem_logits = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    sem = video_scores(sem_logits, labels, background=0)
    fg_prob = 1 - torch.softmax(sem_logits, 1)[:, 0]
    assert sem["avsbench"] == avsbench_video(fg_prob.numpy(), (labels != 0).numpy())
    for got, s, y in zip(sem["semantic"], sem_logits, labels):
        ref = semantic_frame(s.numpy(), y.numpy())
        assert all(np.array_equal(got[k], ref[k]) for k in ref)


def test_resize_crop_geometry_takes_the_shorter_side_then_the_centre():
    geo = resize_crop_geometry(100, 200, 50)
    assert geo.resize_to == (50, 100) and geo.crop == (0, 25, 50, 50) and geo.out == (50, 50)


# ----------------------------------------------------------------------------- AV-Digits end to end
def test_train_and_evaluate_on_avdigits_through_the_commands(tmp_path, capsys):
    run = tmp_path / "seg"
    assert main(["train", "segment", RECIPE, *FAST, "--output", str(run)]) == 0
    rows = json.loads((run / "evaluation.json").read_text())["rows"]
    assert {r["subject"] for r in rows} == {"model", "all_foreground", "all_digits", "all_strokes"}
    assert {r["protocol"] for r in rows} == {"avdigits/binary@0.5", "official"}
    assert all(r["n"] == 4 for r in rows)
    capsys.readouterr()
    assert main(["evaluate", "segment", RECIPE, *FAST, "--checkpoint", str(run / "final")]) == 0
    assert "avdigits/binary@0.5" in capsys.readouterr().out


def test_an_official_segmentation_file_evaluates_as_its_directory(tmp_path):
    import avfusion
    from avfusion.tasks.evaluation import EvaluationReport

    from avfusion.errors import CheckpointError

    run, official_decoder = tmp_path / "seg", "model.decoder_min_width=128"
    assert main(["train", "segment", RECIPE, *FAST, official_decoder, "--output", str(run)]) == 0
    avfusion.export_official(avfusion.from_pretrained(run / "final"), tmp_path / "segm.pth")
    assert main(["evaluate", "segment", RECIPE, *FAST, official_decoder, "--checkpoint", str(tmp_path / "segm.pth"),
                 "--output", str(tmp_path / "eval")]) == 0
    official = EvaluationReport.read(tmp_path / "eval" / "evaluation.json")
    trained = EvaluationReport.read(run / "evaluation.json")
    assert official.metrics() == pytest.approx(trained.metrics(), abs=1e-6)
    narrow = SegmentTask(load_config(SegmentRecipe, RECIPE, FAST)).build_model()  # the AV-Digits floor, 32
    with pytest.raises(CheckpointError, match="width floor 32"):
        avfusion.export_official(narrow, tmp_path / "narrow.pth")
    assert not (tmp_path / "narrow.pth").exists()


def test_avdigits_baselines_by_hand():
    cfg = load_config(SegmentRecipe, RECIPE, FAST)
    task = SegmentTask(cfg)
    data = task.eval_dataset()
    model = task.build_model().eval()
    report = task.evaluate(model, DataLoader(data, batch_size=4))
    items = [data[i] for i in range(len(data))]
    npix = cfg.data.image_size ** 2
    fg_iou = np.mean([it["mask"].sum().item() / npix for it in items])
    assert report.get("all_foreground", "fg_iou").value == pytest.approx(fg_iou)
    digits = np.mean([(it["mask"] & it["all_digits"]).sum().item() / it["all_digits"].sum().item() for it in items])
    strokes = np.mean([it["mask"].sum().item() / it["all_strokes"].sum().item() for it in items])  # mask within
    rows = {(r.subject, r.metric, r.protocol): r.value for r in report.rows}
    assert rows[("all_digits", "fg_iou", "avdigits/binary@0.5")] == pytest.approx(digits)
    assert rows[("all_strokes", "fg_iou", "avdigits/binary@0.5")] == pytest.approx(strokes)
    for it in items:  # boxes: every digit's box; strokes: inside them, the speaking digit's among them
        strokes_only = it["all_strokes"] & ~it["mask"]
        assert torch.equal(it["all_strokes"] & it["mask"], it["mask"]) and not (it["all_strokes"] & ~it["all_digits"]).any()
        assert it["all_strokes"].sum() < it["all_digits"].sum()
        assert (it["num_digits"] > 1) == bool(strokes_only.any())


# ----------------------------------------------------------------------------- AVSBench layout
def _gray_png(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="image2pipe") as c:
        s = c.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = arr.shape[1], arr.shape[0], "gray"
        for p in [*s.encode(av.VideoFrame.from_ndarray(arr.astype(np.uint8), format="gray")), *s.encode()]:
            c.mux(p)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def _avsbench(root: Path) -> Path:
    """Semantic layout: one S4 clip per split (train: first frame annotated), classes bg, dog, car."""
    (root / "label2idx.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "label2idx.json").write_text(json.dumps({"background": 0, "dog": 1, "car": 2}))
    (root / "metadata.csv").write_text("vid,uid,s_min,s_sec,a_obj,split,label\n"
                                       "a,clip_train,0,0,dog,train,v1s\nb,clip_test,0,0,car,test,v1s\n")
    for uid, cls, annotated in (("clip_train", 1, 1), ("clip_test", 2, 5)):
        clip = root / "v1s" / uid
        write(clip / "audio.wav")
        for i in range(5):
            write(clip / "frames" / f"{i}.jpg")
            if i < annotated:
                mask = np.zeros((16, 16))
                mask[4:12, 2:10 + i] = cls
                _gray_png(clip / "labels_semantic" / f"{i}.png", mask)
    return root


@pytest.mark.parametrize("name, classes", [("avsbench_s4", 1), ("avsbench_avss", 3)])
def test_avsbench_training_frames_and_evaluation_clips(tmp_path, name, classes):
    root = _avsbench(tmp_path / "avsbench")
    over = [f"data.name={name}", f"data.root={root}", "data.size=null", "data.eval_size=null",
            "data.image_size=32", "train.batch_size=2", "model.num_classes=null"]
    cfg = load_config(SegmentRecipe, RECIPE, over)
    task = SegmentTask(cfg)
    assert task.num_classes == classes
    train = task.train_dataset()
    sample = train[0]
    assert sample["frame"] == 0  # S4 training clips: only the first frame is annotated
    assert sample["image"].shape == (3, 32, 32) and sample["audio"].shape == (1, 64, 64)
    assert sample["target"].dtype == (torch.float32 if classes == 1 else torch.int64)
    clip = task.eval_dataset()[0]
    assert clip["frames"] == [0, 1, 2, 3, 4] and clip["image"].shape == (5, 3, 32, 32)
    # the mask is resized with the frame (16 -> 32): frame 0's box [4:12, 2:10] becomes [8:24, 4:20]
    expected = torch.zeros(32, 32)
    expected[8:24, 4:20] = 1 if classes == 1 else 2
    assert torch.equal(clip["target"][0].float(), expected)
    model = task.build_model().eval()
    loader = DataLoader(task.eval_dataset(), batch_size=2, collate_fn=task.collate)
    report = task.evaluate(model, loader)
    protocols = {r.protocol for r in report.rows}
    assert {"avsbench", "official"} <= protocols
    assert ("semantic/unseen=skip" in protocols) == (classes > 1)
    assert report.get("foreground" if classes > 1 else "model", "F").n >= 1
    assert report.meta["frames"] == 5
    loss, _ = task.loss(model.train(), task.collate([train[0]]))
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(tmp_path):
    """13 test scenes, batch 4, 2 ranks (uneven): every scene scored once, the same numbers as 1 process."""
    import os
    import subprocess
    import sys

    from avfusion.tasks.evaluation import EvaluationReport

    cfg = load_config(SegmentRecipe, RECIPE, FAST)
    torch.manual_seed(0)
    save_pretrained(SegmentTask(cfg).build_model(), tmp_path / "seg")
    common = ["evaluate", "segment", RECIPE, "data.eval_size=13", "train.batch_size=4",
              "--checkpoint", str(tmp_path / "seg")]
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


def test_soft_dice_loss_by_hand_and_the_bce_dice_option():
    from avfusion.errors import ConfigError
    from avfusion.tasks.segment import SegmentConfig, soft_dice_loss

    target = torch.zeros(1, 2, 2)
    target[0, 0, 0] = 1.0
    logits = torch.full((1, 1, 2, 2), -1e4)
    logits[0, 0, 0, 0] = 1e4  # p = the target exactly
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere: 1 - (2 * 0.5 + 1) / (2 + 1 + 1)
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        SegmentConfig(loss="dice")
