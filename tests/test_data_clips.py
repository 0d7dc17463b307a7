"""ClipDataset / MixtureDataset on generated media: the frame shown, the audio window, the joint image
transform of boxes and masks, labels, dense windows, errors, and the single-open reader."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avfusion.audio import log_mel_spectrogram
from avfusion.data.clips import ClipDataset, MixtureDataset
from avfusion.data.indexes import Index, Item, open_index
from avfusion.errors import ConfigError, DataError, DecodeError
from avfusion.media import open_clip, read_audio, read_frame, read_image, read_mask
from avfusion.transforms import IMAGENET_MEAN, IMAGENET_STD
from tests import clip_media as cm


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    cm.video(root / "a.mp4", 2.0, gop=8)
    cm.video(root / "b.mp4", 2.0, gop=8)
    cm.video(root / "c.mp4", 2.0, gop=8)
    cm.video(root / "noaudio.mp4", 1.0, audio="none")
    cm.video(root / "rotated.mp4", 1.0, rotation=90)
    (root / "broken.mp4").write_bytes(b"\x00" * 1000)
    return root


def index_of(root: Path, names, labels=None, classes=("x", "y", "z"), **kw) -> Index:
    items = tuple(Item(id=n, media=(root / n,), labels=tuple(labels[k]) if labels else (0,))
                  for k, n in enumerate(names))
    return Index("test", root, {"train": items}, tuple(classes), **kw)


def shown_frame(image: torch.Tensor) -> int:
    """Frame index of a normalised (3, H, W) image of a flat grey frame."""
    level = (image[0].mean().item() * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255
    return cm.frame_index(level)


# ---------------------------------------------------------------- reader
def test_reader_matches_read_frame_and_read_audio(media):
    path = media / "a.mp4"
    with open_clip(path) as clip:
        assert clip.duration == pytest.approx(2.0) and clip.has_video and clip.has_audio
        for mode in ("exact", "keyframe"):
            times = [1.05, 0.0, 0.45, 1.99]
            got = clip.frames(times, mode)
            want = np.stack([read_frame(path, t, mode) for t in times])
            assert np.array_equal(got, want), mode
        for start in (0.0, 0.37, 0.9):                     # pure tone: no AAC noise substitution
            np.testing.assert_allclose(clip.audio(start, start + 1.0), read_audio(path, start, start + 1.0), atol=1e-6)
    with open_clip(media / "rotated.mp4") as clip:
        for mode in ("exact", "keyframe"):
            got = clip.frames([0.5], mode)[0]
            assert got.shape == (64, 48, 3) and np.array_equal(got, read_frame(media / "rotated.mp4", 0.5, mode))
    with open_clip(media / "noaudio.mp4") as clip, pytest.raises(DecodeError, match="no audio stream"):
        clip.audio(0.0, 0.5)


def test_reader_reads_window_after_window_of_an_mp3(tmp_path):
    """A reader restarts each later window from the stream start; MP3's demuxer refuses a seek below 0."""
    import av
    path = tmp_path / "tone.mp3"
    with av.open(str(path), "w") as c:
        a = c.add_stream("libmp3lame", rate=44100)
        a.layout = "mono"
        for s in range(0, 3 * 44100, 1152):
            f = av.AudioFrame.from_ndarray(cm.tone(1152, s, amp=0.3)[None].astype(np.float32), format="fltp",
                                           layout="mono")
            f.sample_rate, f.pts = 44100, s
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    with open_clip(path) as clip:
        for start in (1.0, 0.5, 1.7):
            np.testing.assert_array_equal(clip.audio(start, start + 1.0), read_audio(path, start, start + 1.0))


def _stereo_clip(path: Path, *, audio_start: float = 0.0, seconds: float = 2.0, rate: int = 44100) -> Path:
    """A 64x48 H.264 clip with stereo AAC: different pure tones left and right (no noise substitution),
    the audio stream starting `audio_start` s after the video."""
    import av
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=cm.FPS)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("aac", rate=rate)
        a.layout = "stereo"
        for k in range(int(seconds * cm.FPS)):
            for p in v.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), cm.grey(k), np.uint8), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        first = int(round(audio_start * rate))
        for s in range(0, int((seconds - audio_start) * rate), 1024):
            t = (s + np.arange(1024)) / rate
            x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1000 * t)]).astype(np.float32)
            f = av.AudioFrame.from_ndarray(x, format="fltp", layout="stereo")
            f.sample_rate, f.pts = rate, first + s
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def test_reader_stereo_mix_and_late_audio_match_read_audio(tmp_path):
    """The reader sums channels straight from the decoded planes (and leaves silence before a late
    audio stream): the same samples as read_audio's per-frame mean of to_ndarray, at 44.1 and 48 kHz."""
    for rate in (44100, 48000):
        path = _stereo_clip(tmp_path / f"s{rate}.mp4", rate=rate)
        with open_clip(path) as clip:
            for start in (0.0, 0.3, 0.8):
                got = clip.audio(start, start + 1.0)
                want = read_audio(path, start, start + 1.0)
                assert got.shape == want.shape == (16000,)
                # from the file start both decode the same packets: equal; after the reader's seek the
                # stereo AAC decoder state differs slightly from a decode from the start (~3e-6)
                np.testing.assert_allclose(got, want, rtol=0, atol=0 if start == 0.0 else 1e-5,
                                           err_msg=f"{rate} Hz, start {start}")
        spectrum = np.abs(np.fft.rfft(got[-8000:]))                                   # two tones, 2 Hz bins
        assert sorted(np.argsort(spectrum)[-2:].tolist()) == [220, 500]
    late = _stereo_clip(tmp_path / "late.mp4", audio_start=0.4)
    with open_clip(late) as clip:
        head = clip.audio(0.0, 1.0)
        np.testing.assert_allclose(clip.audio(0.8, 1.8), read_audio(late, 0.8, 1.8), rtol=0, atol=1e-5)
    assert np.abs(head[:int(0.35 * 16000)]).max() == 0.0                          # silence before the stream
    assert np.abs(head[int(0.5 * 16000):]).min() >= 0.0 and np.abs(head[int(0.5 * 16000):]).max() > 0.2


def test_train_crop_resized_in_uint8_agrees_with_the_float_path():
    """Training's crop + resize runs on uint8 (as the official PIL pipeline): within one grey level of
    the float resize, and the same geometry (shape, flip)."""
    from avfusion.data.clips import transform_frames
    from avfusion.transforms import Geometry, apply_geometry, normalize
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 90, 160, 3), dtype=np.uint8)
    frames[:, :, :80] //= 4                                                           # a dark left half
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for crop, out, flip in (((5, 10, 70, 120), (56, 56), True), ((0, 0, 90, 160), (64, 48), False),
                            ((3, 4, 32, 32), (32, 32), False), ((10, 20, 40, 30), (96, 96), True)):
        geo = Geometry((90, 160), crop, out, flip)
        fast = transform_frames(frames, geo)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        slow = normalize(apply_geometry(x, geo))
        assert fast.shape == slow.shape == (2, 3, *out) and fast.is_contiguous()
        grey_levels = ((fast - slow).abs() * std * 255.0)
        assert grey_levels.max() <= 1.001 and grey_levels.mean() < 0.35, (crop, out, flip)
    eval_geo = Geometry((100, 178), (6, 20, 80, 80), (80, 80), False)                # a first resize: float path
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(transform_frames(frames, eval_geo), normalize(apply_geometry(x, eval_geo)),
                               rtol=0, atol=0)


def test_read_image_and_mask(tmp_path):
    cm.png(tmp_path / "i.png", np.full((6, 8, 3), 90, np.uint8))
    cm.png(tmp_path / "m.png", (np.eye(6, 8) * 255).astype(np.uint8))
    assert read_image(tmp_path / "i.png").shape == (6, 8, 3)
    mask = read_mask(tmp_path / "m.png")
    assert mask.dtype == np.int64 and set(np.unique(mask)) == {0, 255} and mask[2, 2] == 255
    cm.png(tmp_path / "c.png", np.dstack([np.eye(6, 8, dtype=np.uint8) * 255, np.zeros((6, 8, 2), np.uint8)]))
    with pytest.raises(DecodeError, match="colour mask"):
        read_mask(tmp_path / "c.png")


# ---------------------------------------------------------------- ClipDataset
def test_eval_sample_is_the_centred_window(media):
    ds = ClipDataset(index_of(media, ["a.mp4"]), "train", train=False, window=1.0, image_size=(32, 32))
    s = ds[0]
    assert set(s) == {"index", "id", "image", "audio", "label"}
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.float32
    assert s["audio"].shape == (1, 128, 64) and s["label"].dtype == torch.int64 and s["label"].ndim == 0
    assert shown_frame(s["image"]) == 10                       # frame shown at 1.0 s, the window centre
    want = log_mel_spectrogram(torch.from_numpy(read_audio(media / "a.mp4", 0.5, 1.5)), 16000, 128, 1.0)
    torch.testing.assert_close(s["audio"][0], want, atol=1e-5, rtol=0)
    key = ClipDataset(index_of(media, ["a.mp4"]), "train", train=False, window=1.0, image_size=(32, 32),
                      frame_mode="keyframe")
    assert shown_frame(key[0]["image"]) == 8                   # the keyframe before 1.0 s (GOP 8)


def test_train_samples_depend_on_seed_epoch_index_only(media):
    idx = index_of(media, ["a.mp4", "b.mp4"])
    ds = ClipDataset(idx, "train", train=True, window=1.0, image_size=(32, 32), seed=1)
    first = ds[1]
    ds[0]
    again = ds[1]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["audio"], again["audio"])
    frames = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        s = ds[1]
        frames.add(shown_frame(s["image"]))
        assert 5 <= shown_frame(s["image"]) <= 15              # window start in [0, 1]: centre in [0.5, 1.5]
    assert len(frames) > 2                                      # temporal jitter
    ds.set_epoch(0)
    other_seed = ClipDataset(idx, "train", train=True, window=1.0, image_size=(32, 32), seed=2)
    assert not torch.equal(ds[1]["audio"], other_seed[1]["audio"])


def test_boxes_and_mask_follow_the_image(tmp_path):
    h, w = 60, 80
    img = np.full((h, w, 3), 10, np.uint8)
    img[15:45, 40:70] = 240                                     # the object: x 40..70, y 15..45
    mask = np.zeros((h, w), np.uint8)
    mask[15:45, 40:70] = 1
    cm.png(tmp_path / "f.png", img)
    cm.png(tmp_path / "m.png", mask)
    cm.wav(tmp_path / "a.wav", 2.0)
    row = {"media": "f.png", "audio": "a.wav", "mask": "m.png", "labels": ["cat", "dog"], "split": "train",
           "boxes": [[40 / w, 15 / h, 70 / w, 45 / h]]}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    idx = open_index("manifest", tmp_path)
    for train in (False, True):
        ds = ClipDataset(idx, "train", train=train, window=1.0, image_size=(48, 48), seed=3)
        for epoch in range(4 if train else 1):
            ds.set_epoch(epoch)
            s = ds[0]
            assert s["label"].tolist() == [1.0, 1.0] and s["label"].dtype == torch.float32
            bright = s["image"][0] > 0                          # object pixels after normalisation
            assert s["mask"].shape == (48, 48) and s["mask"].dtype == torch.int64
            assert (bright == (s["mask"] == 1)).float().mean() > 0.97
            x0, y0, x1, y1 = s["boxes"][0].tolist()
            inside = torch.zeros(48, 48, dtype=torch.bool)
            inside[round(y0):round(y1), round(x0):round(x1)] = True
            assert (inside == bright).float().mean() > 0.95


def test_dense_windows(media):
    ds = ClipDataset(index_of(media, ["a.mp4"]), "train", train=False, window=1.0, image_size=(32, 32),
                     dense_windows=3)
    s = ds[0]
    assert s["image"].shape == (3, 3, 32, 32) and s["audio"].shape == (3, 1, 128, 64)
    assert [shown_frame(x) for x in s["image"]] == [5, 10, 15]  # windows at 0-1, 0.5-1.5, 1-2 s
    want = log_mel_spectrogram(torch.from_numpy(read_audio(media / "a.mp4", 1.0, 2.0)), 16000, 128, 1.0)
    torch.testing.assert_close(s["audio"][2, 0], want, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError):
        ClipDataset(index_of(media, ["a.mp4"]), "train", train=True, dense_windows=3)


def test_errors_name_the_item_and_the_loader_alone_decides_to_skip(media):
    """A dataset always raises, naming item and file; skip-or-raise is the loader's decision (training:
    on_error; evaluation: always strict), and a skipped item comes back counted, never replaced."""
    from avfusion.data.loading import make_loader

    idx = index_of(media, ["a.mp4", "broken.mp4", "absent.mp4"])
    ds = ClipDataset(idx, "train", train=False, window=1.0, image_size=(32, 32))
    with pytest.raises(DecodeError, match="broken.mp4.*item 'broken.mp4'"):
        ds[1]
    with pytest.raises(DecodeError, match="file not found"):
        ds[2]
    with pytest.raises(TypeError):
        ClipDataset(idx, "train", train=False, window=1.0, on_error="skip")     # no second place decides
    loader = make_loader(ds, 3, train=True, on_error="skip", max_error_fraction=0.9, drop_last=False)
    batches = list(loader)
    assert [b["index"].tolist() for b in batches] == [[0]]
    assert sorted(r["id"] for r in loader.errors.items) == ["absent.mp4", "broken.mp4"]
    with pytest.raises(DecodeError, match="item 'broken.mp4'"):
        list(make_loader(ds, 3, train=False))
    unlabeled = index_of(media, ["a.mp4"], labels=[()])
    with pytest.raises(DataError, match="0 labels"):
        ClipDataset(unlabeled, "train", train=False, window=1.0)[0]
    assert "label" not in ClipDataset(index_of(media, ["a.mp4"], classes=()), "train", train=False, window=1.0)[0]


# ---------------------------------------------------------------- MixtureDataset
def test_training_mixtures(media):
    idx = index_of(media, ["a.mp4", "b.mp4", "c.mp4"], labels=[(0,), (1,), (2,)])
    ds = MixtureDataset(idx, "train", train=True, window=1.0, image_size=(32, 32), seed=0)
    assert len(ds) == 3
    s = ds[0]
    assert s["image"].shape == (2, 3, 32, 32) and s["audio"].shape == (1, 128, 64)
    assert s["source_audio"].shape == (2, 1, 128, 64) and s["source_waveform"].shape == (2, 16000)
    torch.testing.assert_close(s["mixture_waveform"], s["source_waveform"].sum(0))
    torch.testing.assert_close(s["audio"][0], log_mel_spectrogram(s["mixture_waveform"], 16000, 128, 1.0))
    assert s["source_ids"][0] == "a.mp4" and s["label"].tolist()[0] == 0 and s["id"] == "+".join(s["source_ids"])
    partners = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        partners.add(ds.sources(0)[0])
    assert partners == {"a.mp4+b.mp4", "a.mp4+c.mp4"}


def test_evaluation_mixtures_are_fixed(media):
    idx = index_of(media, ["a.mp4", "b.mp4", "c.mp4"])
    ds = MixtureDataset(idx, "train", train=False, window=1.0, image_size=(32, 32), pairs=[["c.mp4", "a.mp4"], [1, 2]])
    assert len(ds) == 2 and ds.sources(0)[0] == "c.mp4+a.mp4" and ds.sources(1)[0] == "b.mp4+c.mp4"
    first = ds[0]
    ds.set_epoch(5)
    assert torch.equal(first["mixture_waveform"], ds[0]["mixture_waveform"])
    with pytest.raises(ConfigError, match="not in"):
        MixtureDataset(idx, "train", train=False, pairs=[["a.mp4", "zzz"]])
    auto = MixtureDataset(idx, "train", train=False, seed=4)
    assert auto.mixtures == MixtureDataset(idx, "train", train=False, seed=4).mixtures


def test_items_holding_several_media_are_listed_mixtures(media):
    item = Item(id="0000:a+b", media=(media / "a.mp4", media / "b.mp4"), extra={"sources": ("a", "b")})
    idx = Index("vggsound_music", media, {"test": (item,)})
    ds = MixtureDataset(idx, "test", train=False, window=1.0, image_size=(32, 32))
    s = ds[0]
    assert len(ds) == 1 and s["id"] == "0000:a+b" and s["source_ids"] == ["a", "b"] and "label" not in s
    with pytest.raises(DataError, match="MixtureDataset"):
        ClipDataset(idx, "test", train=False)[0]
