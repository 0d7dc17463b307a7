"""`avfusion data prepare`: folders and tar shards -> 360p-or-smaller H.264 with a keyframe every 16 frames,
in the source's or VGGSound's layout; failures named, resumable, atomic."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest

from avfusion.cli import main
from avfusion.data.indexes import open_index
from avfusion.data.prepare import REPORT_NAME, TMP_SUFFIX, prepare
from avfusion.errors import ConfigError, DataError
from avfusion.media.transcode import output_size
from tests import clip_media as cm

FPS = 25


def clip(path: Path, seconds: float = 2.0, *, size=(64, 48), audio: str | None = "aac", fmt: str | None = None,
         gop: int = 20, shift: int = 0) -> Path:
    """A moving noisy gradient as H.264 (keyframe every `gop` frames, not every 16) with a tone:
    audio 'aac', 'pcm' (not AAC: must be re-encoded) or None; `shift` seeds another picture (the noise
    keeps gzip from folding one clip onto another in a tar.gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "preset": "ultrafast"}
        a = None
        if audio is not None:
            a = c.add_stream("aac" if audio == "aac" else "pcm_s16le", rate=cm.RATE)
            a.layout = "mono"
        ramp = np.arange(w, dtype=np.int64)[None, :, None]
        noise = np.random.default_rng(shift).integers(0, 64, (h, w, 3))
        for k in range(int(seconds * FPS)):
            img = ((ramp + 5 * k + np.roll(noise, k, axis=1)) % 256).astype(np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            total = int(seconds * cm.RATE)
            for s in range(0, total, 1024):
                x = cm.tone(min(1024, total - s), s)
                f = av.AudioFrame.from_ndarray(x[None], format="fltp", layout="mono")
                f.sample_rate, f.pts = cm.RATE, s
                for p in a.encode(f):                   # PyAV converts to the encoder's sample format
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def facts(path: Path) -> dict:
    """Size, codecs, keyframe packet positions, durations of a prepared file."""
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        keys = [i for i, p in enumerate(p for p in c.demux(v) if p.size) if p.is_keyframe]
        c.seek(0)
        frames = sum(1 for _ in c.decode(v))
        return {"size": (v.codec_context.width, v.codec_context.height), "video": v.codec_context.name,
                "audio": a.codec_context.name, "keys": keys, "frames": frames,
                "audio_seconds": float(a.duration * a.time_base)}


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(f"*{TMP_SUFFIX}")]


def shard(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of the test inputs, made once."""
    d = tmp_path_factory.mktemp("media")
    good = {k: clip(d / f"{k}.mp4", 2.0, shift=40 * n).read_bytes() for n, k in enumerate(("good1", "good2", "good3"))}
    cut = cm.truncate(cm.video(d / "cut.mp4", 2.5, faststart=True), 0.7).read_bytes()   # header first, data cut
    return {**good, "cut": cut, "moovless": good["good1"][: len(good["good1"]) // 2],   # header at the end: lost
            "noaudio": clip(d / "noaudio.mp4", 1.0, audio=None).read_bytes(),
            "pcm": clip(d / "pcm.mkv", 1.0, audio="pcm", fmt="matroska").read_bytes(),
            "garbage": b"not a video at all " * 300}


def test_output_size_rule():
    assert output_size(1280, 720) == (640, 360)
    assert output_size(640, 480) == (480, 360)
    assert output_size(720, 1280) == (360, 640)             # portrait: the short side is the width
    assert output_size(854, 480) == (640, 360)
    assert output_size(64, 48) == (64, 48)                  # never upscaled
    assert output_size(65, 49) == (64, 48)                  # H.264 4:2:0 needs even sides
    assert output_size(360, 360) == (360, 360)


def test_folder_end_to_end(media, tmp_path):
    src = tmp_path / "downloads"
    for name in ("good1", "cut", "moovless", "noaudio", "garbage"):
        (src / "sub" / f"{name}.mp4").parent.mkdir(parents=True, exist_ok=True)
        (src / "sub" / f"{name}.mp4").write_bytes(media[name])
    (src / "good2.mp4").write_bytes(media["good2"])
    (src / "pcm.mkv").write_bytes(media["pcm"])
    (src / "notes.txt").write_text("not a video")
    before = digest(src)
    report = prepare([src], tmp_path / "out", workers=0, progress=False)

    assert report.counts == {"done": 3, "already_done": 0, "not_in_annotations": 0, "failed": 4}
    reasons = {Path(f.source).name: f.reason for f in report.failed}
    assert set(reasons) == {"cut.mp4", "moovless.mp4", "noaudio.mp4", "garbage.mp4"}
    assert "truncated" in reasons["cut.mp4"] and reasons["noaudio.mp4"] == "no audio stream"
    assert "cannot open" in reasons["garbage.mp4"] and "cannot open" in reasons["moovless.mp4"]
    out = tmp_path / "out"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4"))
    assert written == ["good2.mp4", "pcm.mp4", "sub/good1.mp4"]
    good = facts(out / "sub/good1.mp4")
    assert good["size"] == (64, 48) and good["video"] == "h264" and good["audio"] == "aac"
    assert good["frames"] == 50 and good["keys"] == [0, 16, 32, 48]     # the input had them at 0, 20, 40
    assert good["audio_seconds"] == pytest.approx(2.0, abs=0.1)
    pcm = facts(out / "pcm.mp4")                                         # PCM audio re-encoded as AAC
    assert pcm["audio"] == "aac" and pcm["audio_seconds"] == pytest.approx(1.0, abs=0.1)
    assert digest(src) == before and not leftovers(out)                  # sources untouched, no temporaries
    on_disk = json.loads((out / REPORT_NAME).read_text())
    assert on_disk["counts"] == report.counts and len(on_disk["failed"]) == 4


def test_large_input_scaled_to_360_short_side(tmp_path):
    src = clip(tmp_path / "in" / "wide.mp4", 0.8, size=(640, 480))
    prepare([src], tmp_path / "out", workers=0, progress=False)
    f = facts(tmp_path / "out" / "wide.mp4")
    assert f["size"] == (480, 360) and f["frames"] == 20 and f["keys"] == [0, 16]


def test_second_run_does_no_work(media, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("good1", "good2"):
        (src / f"{name}.mp4").write_bytes(media[name])
    archive = shard(tmp_path / "part.tar.gz", {"video/good3_000000.mp4": media["good1"]})
    first = prepare([src, archive], tmp_path / "out", workers=0, progress=False)
    assert first.counts["done"] == 3
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.mp4")}

    import avfusion.media.transcode as mt
    calls = []
    monkeypatch.setattr(mt, "transcode", lambda *a, **k: calls.append(a))
    again = prepare([src, archive], tmp_path / "out", workers=0, progress=False)
    assert calls == [] and again.counts == {"done": 0, "already_done": 3, "not_in_annotations": 0, "failed": 0}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.mp4")} == stamps


def test_tar_shard_with_a_corrupt_member(media, tmp_path):
    archive = shard(tmp_path / "vggsound_00.tar.gz", {
        "vggsound/video/aaaaaaaaaaa_000010.mp4": media["good1"],
        "vggsound/video/bbbbbbbbbbb_000000.mp4": media["garbage"],
        "vggsound/video/ccccccccccc_000020.mp4": media["good2"],
        "vggsound/README.txt": b"hello"})
    again = shard(tmp_path / "vggsound_01.tar.gz", {                  # a good copy of the broken one,
        "vggsound/video/bbbbbbbbbbb_000000.mp4": media["good3"],      # and one of a prepared one
        "vggsound/video/ccccccccccc_000020.mp4": media["good2"]})
    report = prepare([archive, again], tmp_path / "out", workers=0, progress=False)
    assert report.counts == {"done": 3, "already_done": 1, "not_in_annotations": 0, "failed": 1}
    assert report.failed[0].source == f"{archive}:vggsound/video/bbbbbbbbbbb_000000.mp4"
    assert report.sources[0]["complete"] and report.sources[0]["members_read"] == 4
    for name in ("aaaaaaaaaaa_000010", "bbbbbbbbbbb_000000", "ccccccccccc_000020"):
        assert facts(tmp_path / f"out/vggsound/video/{name}.mp4")["keys"] == [0, 16, 32, 48]


@pytest.mark.parametrize("damage", ["cut_gzip", "bad_header"])
def test_corrupt_shard_stops_that_shard_only(media, tmp_path, damage):
    members = {f"video/v{k}_000000.mp4": media[f"good{k + 1}"] for k in range(3)}   # distinct: gzip can't fold them
    if damage == "cut_gzip":                                # a download that stopped mid-stream
        archive = shard(tmp_path / "broken.tar.gz", members)
        archive.write_bytes(archive.read_bytes()[: int(archive.stat().st_size * 0.6)])
    else:                                                   # garbage over the second member's header
        archive = shard(tmp_path / "broken.tar", members, mode="w")
        data = bytearray(archive.read_bytes())
        second = 512 + (len(media["good1"]) + 511) // 512 * 512         # after member 1's header and data
        data[second:second + 512] = b"\x7f" * 512
        archive.write_bytes(bytes(data))
    other = shard(tmp_path / "fine.tar.gz", {"video/w0_000000.mp4": media["good2"]})
    report = prepare([archive, other], tmp_path / "out", workers=0, progress=False)

    assert report.counts["failed"] == 1 and report.failed[0].source == str(archive)
    assert "corrupt archive, stopped after" in report.failed[0].reason
    broken = report.sources[0]
    assert not broken["complete"] and broken["members_read"] >= 1
    assert damage != "bad_header" or broken["members_read"] == 1
    done = sorted(p.name for p in (tmp_path / "out/video").glob("*.mp4"))
    assert done[-1] == "w0_000000.mp4" and len(done) == broken["members_read"] + 1 >= 2
    assert report.sources[1]["complete"]


VGG_ROWS = """\
aaaaaaaaaaa,10,"playing violin, fiddle",train
bbb_b-bbbbb,0,dog barking,test
ccccccccccc,20,dog barking,train
"""


def test_vggsound_layout_from_shards(media, tmp_path):
    (tmp_path / "vggsound.csv").write_text(VGG_ROWS)
    one = shard(tmp_path / "shards/vggsound_00.tar.gz", {
        "vggsound/video/aaaaaaaaaaa_000010.mp4": media["good1"],
        "vggsound/video/zzzzzzzzzzz_000000.mp4": media["good2"]})      # not in the csv: skipped
    shard(tmp_path / "shards/vggsound_01.tar.gz", {"x/video/bbb_b-bbbbb_000000.mp4": media["good2"]})
    out = tmp_path / "vggsound"
    report = prepare([one.parent], out, dataset="vggsound", annotations=tmp_path / "vggsound.csv", workers=0,
                     progress=False)
    assert report.counts == {"done": 2, "already_done": 0, "not_in_annotations": 1, "failed": 0}
    assert report.not_in_annotations == [f"{one}:vggsound/video/zzzzzzzzzzz_000000.mp4"]
    assert (out / "clips/playing_violin__fiddle/aaaaaaaaaaa_000010_000020.mp4").is_file()
    assert (out / "clips/dog_barking/bbb_b-bbbbb_000000_000010.mp4").is_file()
    index = open_index("vggsound", out)
    counts = index.report(check_readable=True).counts
    assert (counts["train"].present, counts["train"].missing, counts["train"].unreadable) == (1, 1, 0)
    assert (counts["test"].present, counts["test"].unreadable) == (1, 0)


def test_interrupted_write_leaves_no_partial_file(media, tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/good1.mp4").write_bytes(media["good1"])
    stale = tmp_path / "out/.good1.mp4.x1y2z3.prepare-tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"left by a killed run")

    import avfusion.media.transcode as mt

    def crash(src, dst, *a, **k):
        Path(dst).write_bytes(b"half a video")
        raise KeyboardInterrupt

    monkeypatch.setattr(mt, "transcode", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare([tmp_path / "src"], tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out/good1.mp4").exists() and not leftovers(tmp_path / "out")
    assert json.loads((tmp_path / "out" / REPORT_NAME).read_text())["interrupted"] is True


def test_cli_as_typed_with_worker_processes(media, tmp_path, capsys):
    (tmp_path / "vggsound.csv").write_text(VGG_ROWS)
    archive = shard(tmp_path / "vggsound_00.tar.gz", {
        "vggsound/video/aaaaaaaaaaa_000010.mp4": media["good1"],
        "vggsound/video/ccccccccccc_000020.mp4": media["noaudio"]})
    argv = ["data", "prepare", "--source", str(archive), "--output", str(tmp_path / "out"),
            "--dataset", "vggsound", "--annotations", str(tmp_path / "vggsound.csv"), "--workers", "2"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "1 prepared" in printed and "1 failed" in printed
    assert f"{archive}:vggsound/video/ccccccccccc_000020.mp4: no audio stream" in printed
    report = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert report["counts"] == {"done": 1, "already_done": 0, "not_in_annotations": 0, "failed": 1}
    assert (tmp_path / "out/annotations/vggsound.csv").read_text() == VGG_ROWS


def test_cli_help_and_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "prepare", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "keyframe every 16 frames" in text and "Example" in text and "--annotations vggsound.csv" in text
    assert main(["data", "prepare", "--source", str(tmp_path / "absent"), "--output", str(tmp_path / "o")]) == 1
    with pytest.raises(DataError, match="absent: source not found"):
        prepare([tmp_path / "absent"], tmp_path / "o")
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError, match="needs --annotations"):
        prepare([tmp_path / "d"], tmp_path / "o", dataset="vggsound")
    with pytest.raises(ConfigError, match="vggsound only"):
        prepare([tmp_path / "d"], tmp_path / "o", dataset="audioset", annotations=tmp_path / "x.csv")


def test_output_inside_the_source_and_readable_by_others(media, tmp_path):
    src = tmp_path / "downloads"
    src.mkdir()
    (src / "good1.mp4").write_bytes(media["good1"])
    prepare([src], src / "prepared", workers=0, progress=False)
    again = prepare([src], src / "prepared", workers=0, progress=False)       # its own outputs are not inputs
    assert again.counts == {"done": 0, "already_done": 1, "not_in_annotations": 0, "failed": 0}
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*.mp4")) == ["good1.mp4", "prepared/good1.mp4"]
    import os
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (src / "prepared/good1.mp4", src / "prepared" / REPORT_NAME):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask                 # not mkstemp's private 0600
