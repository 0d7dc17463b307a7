"""`avfusion data check`: on a VGGSound-layout folder it names exactly the broken items and fails."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from avfusion.cli import main
from avfusion.data.check import check_index
from avfusion.data.indexes import open_index
from tests import clip_media as cm
from tests.indexes_media import write

ROWS = """\
okokokokok1,0,dog barking,train
okokokokok2,10,dog barking,train
truncated01,20,dog barking,train
cutdownload,0,dog barking,train
garbage0001,0,cat purring,train
absent00001,5,cat purring,test
okokokokok3,0,cat purring,test
silent00001,0,cat purring,test
frozen00001,0,cat purring,test
noaudio0001,0,cat purring,test
"""


def clip(root: Path, folder: str, ytid: str, start: int) -> Path:
    return root / "clips" / folder / f"{ytid}_{start:06d}_{start + 10:06d}.mp4"


@pytest.fixture(scope="module")
def vggsound(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vggsound")
    (root / "annotations").mkdir()
    (root / "annotations/vggsound.csv").write_text(ROWS)
    write(clip(root, "dog_barking", "okokokokok1", 0))
    write(clip(root, "dog_barking", "okokokokok2", 10))
    write(clip(root, "dog_barking", "truncated01", 20), "truncated")
    cm.truncate(cm.video(clip(root, "dog_barking", "cutdownload", 0), 2.5, faststart=True), 0.7)
    write(clip(root, "cat_purring", "garbage0001", 0), "garbage")
    write(clip(root, "cat_purring", "okokokokok3", 0))
    cm.video(clip(root, "cat_purring", "silent00001", 0), 1.0, audio="silent")
    cm.video(clip(root, "cat_purring", "frozen00001", 0), 1.0, frozen=True)
    cm.video(clip(root, "cat_purring", "noaudio0001", 0), 1.0, audio="none")
    return root


def test_cli_names_exactly_the_failing_items(vggsound, tmp_path, capsys):
    report = tmp_path / "report.json"
    code = main(["data", "check", "--dataset", "vggsound", "--root", str(vggsound), "--report", str(report)])
    assert code == 1
    data = json.loads(report.read_text())
    status = {r["id"]: r["status"] for r in data["items"]}
    assert status == {
        "okokokokok1_000000": "ok", "okokokokok2_000010": "ok", "okokokokok3_000000": "ok",
        "truncated01_000020": "unreadable", "cutdownload_000000": "unreadable",
        "garbage0001_000000": "unreadable", "absent00001_000005": "missing",
        "silent00001_000000": "silent_audio", "frozen00001_000000": "frozen_video", "noaudio0001_000000": "no_audio"}
    paths = {r["id"]: r["path"] for r in data["items"] if r["status"] != "ok"}
    assert paths["truncated01_000020"].endswith("truncated01_000020_000030.mp4")
    assert paths["absent00001_000005"].endswith("cat_purring/absent00001_000005_000015.mp4")
    assert data["counts"]["train"] == {"ok": 2, "missing": 0, "unreadable": 3, "no_audio": 0,
                                       "silent_audio": 0, "frozen_video": 0}
    assert data["counts"]["test"]["missing"] == 1 and data["counts"]["test"]["ok"] == 1
    out = capsys.readouterr().out
    for name in ("truncated01_000020", "cutdownload_000000", "garbage0001_000000", "absent00001_000005"):
        assert name in out
    assert "okokokokok1" not in out


def test_cli_exit_status_follows_the_checked_split_and_ignore(vggsound):
    assert main(["data", "check", "--dataset", "vggsound", "--root", str(vggsound), "--split", "train"]) == 1
    ok_only = vggsound.parent / "vgg_ok"
    (ok_only / "annotations").mkdir(parents=True)
    rows = "okokokokok1,0,dog barking,train\nfrozen00001,0,cat purring,test\n"
    (ok_only / "annotations/vggsound.csv").write_text(rows)
    write(clip(ok_only, "dog_barking", "okokokokok1", 0))
    cm.video(clip(ok_only, "cat_purring", "frozen00001", 0), 1.0, frozen=True)
    assert main(["data", "check", "--dataset", "vggsound", "--root", str(ok_only)]) == 1
    assert main(["data", "check", "--dataset", "vggsound", "--root", str(ok_only), "--ignore", "frozen_video"]) == 0
    assert main(["data", "check", "--dataset", "vggsound", "--root", str(ok_only / "nowhere")]) == 1  # DataError


def test_still_frame_items_check_frames_masks_and_audio(tmp_path):
    import numpy as np
    cm.png(tmp_path / "f.png", np.full((8, 8, 3), 50, np.uint8))
    cm.png(tmp_path / "m.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    cm.wav(tmp_path / "a.wav", 1.0)
    rows = [{"id": "good", "media": "f.png", "audio": "a.wav", "mask": "m.png"},
            {"id": "badmask", "media": "f.png", "audio": "a.wav", "mask": "bad.png"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    report = check_index(open_index("manifest", tmp_path), progress=False)
    assert [(r.id, r.status) for r in report.results] == [("good", "ok"), ("badmask", "unreadable")]
    assert report.results[1].path.endswith("bad.png")


def test_cli_preview_draws_a_grid(tmp_path):
    from avfusion.media import read_image

    out = tmp_path / "grid.png"
    assert main(["data", "preview", "avdigits", "-o", str(out), "--n", "2", "--split", "test"]) == 0
    grid = read_image(out)
    assert grid.shape[0] > 150 and grid.shape[1] > 150
    assert (grid[..., 1].astype(int) - grid[..., 0]).max() > 150      # the green box of the sounding digit
    assert main(["data", "preview", "avdigits", "-o", str(out), "--n", "0"]) == 1
