"""The inference commands run in-process as a user would, on generated footage close to real files."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from avfusion.cli import main
from avfusion.media import probe, read_frame
from tests.inference_media import tiny_models, truncate, write_clip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return {
        "phone": write_clip(root / "phone.mp4", 1.6, size=(64, 48), rotation=270),   # H.264/AAC 48k stereo, NTSC
        "web": write_clip(root / "web.webm", 1.2, size=(97, 71), codec="libvpx-vp9", audio="libopus",
                          container="webm"),
        "mute": write_clip(root / "mute.mp4", 1.0, audio=None),
    }


def run(*argv) -> int:
    return main([str(a) for a in argv])


def windows(path, stride=None) -> int:
    from avfusion.inference import plan_windows
    return len(plan_windows(probe(path).duration, 0.5, stride))


def test_classify_prints_a_table_and_writes_json(clips, models, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n0,/m/a,Dog\n1,/m/b,Cat\n2,/m/c,\"Car, engine\"\n3,/m/d,Rain\n")
    out = tmp_path / "phone.json"
    assert run("classify", clips["phone"], "-c", models["classify"], "--labels", labels, "--top-k", "2", "-o", out) == 0
    table = capsys.readouterr().out
    assert "whole video" in table and table.count(" s  ") == 4 and str(out) in table
    result = json.loads(out.read_text())
    assert result["command"] == "classify" and len(result["windows"]) == 4 and len(result["clip"]) == 2
    assert {t["label"] for w in result["windows"] for t in w["top"]} <= {"Dog", "Cat", "Car, engine", "Rain"}
    # the official-format file, with its input sizes given on the command line
    assert run("classify", clips["web"], "-c", models["official"], "--image-size", "32", "--audio-size", "32,32",
               "-o", tmp_path / "web.json") == 0
    assert len(json.loads((tmp_path / "web.json").read_text())["windows"]) == windows(clips["web"])


def test_localize_writes_pictures_video_and_peaks(clips, models, tmp_path, capsys):
    out = tmp_path / "loc"
    assert run("localize", clips["phone"], "-c", models["localize"], "--stride", "0.25", "-o", out) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["readout"] == "contrastive" and len(result["windows"]) == windows(clips["phone"], 0.25) == 6
    for w in result["windows"]:
        x, y = w["peak"]
        assert 0 <= x <= 48 and 0 <= y <= 64                               # displayed frame: rotated
    pngs = sorted((out / "heatmaps").glob("*.png"))
    assert len(pngs) == 6 and read_frame(pngs[0], 0.0).shape == (64, 48, 3)
    assert (out / "heatmaps.png").stat().st_size > 1000
    video = probe(out / "overlay.mp4")
    assert (video.width, video.height) == (48, 64) and video.has_audio and video.channels == 2
    assert video.duration == pytest.approx(1.6, abs=0.1)
    assert "peak at x=" in capsys.readouterr().out


def test_separate_points_and_boxes(clips, models, tmp_path):
    out = tmp_path / "sep"
    assert run("separate", clips["web"], "-c", models["separate"], "--point", "20,30", "--box", "40,0,97,71",
               "-o", out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["mixture.wav", "regions.png", "residual.wav", "result.json", "source_0.mp4", "source_0.wav",
                     "source_1.mp4", "source_1.wav", "spectrograms.png"]
    mixture, rate = sf.read(out / "mixture.wav")
    source, _ = sf.read(out / "source_1.wav")
    assert rate == 16000 and len(source) == len(mixture) == pytest.approx(1.2 * 16000, abs=400)
    result = json.loads((out / "result.json").read_text())
    (x0, y0, x1, y1), box = (s["region"] for s in result["sources"])
    assert (x1 - x0, y1 - y0) == pytest.approx((35.5, 35.5), abs=0.1)     # the square around the point
    assert (x0 + x1) / 2 == pytest.approx(20, abs=0.1) and box == [40.0, 0.0, 97.0, 71.0]
    video = probe(out / "source_1.mp4")
    assert video.has_audio and video.sample_rate == 16000 and (video.width, video.height) == (98, 72)


def test_segment_writes_masks_at_frame_size(clips, models, tmp_path):
    out = tmp_path / "seg"
    assert run("segment", clips["web"], "-c", models["segment"], "-o", out, "--batch-size", "1") == 0
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == windows(clips["web"]) == 3
    mask = read_frame(masks[0], 0.0)
    assert mask.shape == (71, 97, 3) and set(np.unique(mask)) <= {0, 255}
    assert len(list((out / "overlays").glob("*.png"))) == 3 and probe(out / "overlay.mp4").has_audio


def test_embed_several_videos_flags_missing_audio(clips, models, tmp_path, capsys):
    out = tmp_path / "features.npz"
    assert run("embed", clips["phone"], clips["mute"], "-c", models["encoder"], "-o", out) == 0
    assert "silence substituted" in capsys.readouterr().out
    with np.load(out) as f:
        assert f["image"].shape == f["audio"].shape == f["fusion"].shape == (6, 32)
        assert f["video"].tolist() == [0, 0, 0, 0, 1, 1] and f["audio_substituted"].tolist() == [False, True]
        assert f["videos"][1].endswith("mute.mp4") and json.loads(str(f["meta"]))["command"] == "embed"


def test_failures_name_the_file_and_leave_nothing(clips, models, tmp_path, caplog):
    out = tmp_path / "out"
    assert run("localize", clips["mute"], "-c", models["encoder"], "-o", out) == 1
    assert "mute.mp4: has no audio stream, and localize needs the sound" in caplog.text
    cut = truncate(write_clip(tmp_path / "cut.mp4", 2.0, faststart=True), 0.5)
    assert run("segment", cut, "-c", models["segment"], "-o", out) == 1
    assert "cut.mp4" in caplog.text and "truncated" in caplog.text
    assert run("segment", clips["web"], "-c", models["classify"], "-o", out) == 1
    assert "cannot segment" in caplog.text
    assert run("localize", clips["phone"], "-c", models["encoder"], "-o", clips["phone"].parent) == 1
    assert "it holds the input" in caplog.text and clips["phone"].is_file()
    assert run("classify", clips["web"], "-c", models["classify"], "-o", clips["web"]) == 1     # not a .json
    assert run("embed", clips["web"], "-c", models["encoder"], "-o", clips["web"].parent) == 1
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert run("segment", clips["web"], "-c", models["segment"], "-o", foreign) == 1
    assert "did not write" in caplog.text and os.listdir(foreign) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["cut.mp4", "mine"]


def test_a_failed_render_leaves_no_partial_output(clips, models, tmp_path, monkeypatch, caplog):
    from avfusion.inference import render
    from avfusion.errors import OutputError

    out = tmp_path / "loc"
    assert run("localize", clips["phone"], "-c", models["encoder"], "-o", out, "--no-video") == 0
    before = (out / "result.json").read_text()

    def broken(*args, **kwargs):
        raise OutputError("overlay.mp4: encoding failed (disk full)")
    monkeypatch.setattr(render, "write_video", broken)
    assert run("localize", clips["phone"], "-c", models["encoder"], "-o", out) == 1
    assert "disk full" in caplog.text
    assert (out / "result.json").read_text() == before and sorted(os.listdir(tmp_path)) == ["loc"]
