"""Media reading on real files generated with PyAV and soundfile (frame content = frame index)."""
from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from avfusion import media as video
from avfusion.audio import pad_or_repeat
from avfusion.errors import DecodeError

FPS, N_FRAMES, GOP, SIZE = 10, 30, 10, 64
SR = 16000
CLICK_AT = 1.0          # seconds: a short burst in the audio, to check alignment


def _frame_image(i: int) -> np.ndarray:
    img = np.full((SIZE, SIZE, 3), 8 * i, np.uint8)          # grey level encodes the index
    img[:16, :16] = (255, 0, 0)                                # red corner marks the top-left
    return img


def _index_of(img: np.ndarray) -> int:
    return int(round(float(np.median(img[32:, 32:, 1])) / 8))


def _signal(seconds: float, rate: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    x = 0.2 * np.sin(2 * np.pi * 440 * t)
    burst = (t >= CLICK_AT) & (t < CLICK_AT + 0.01)
    x[burst] = 0.9
    return x.astype(np.float32)


def _encode_audio(container, codec: str, x: np.ndarray, rate: int, offset: float = 0.0, stereo=True):
    stream = container.add_stream(codec, rate=rate)
    stream.layout = "stereo" if stereo else "mono"
    return stream, (x, rate, offset, stereo)


def _write_audio(container, stream, spec):
    x, rate, offset, stereo = spec
    data = np.stack([x, np.zeros_like(x)]) if stereo else x[None]   # right channel silent
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp",
                                       layout="stereo" if stereo else "mono")
    frame.sample_rate, frame.pts = rate, int(round(offset * rate))
    ctx = stream.codec_context
    resampler = av.AudioResampler(format=ctx.format.name, layout=stream.layout.name, rate=rate)
    pts = frame.pts
    for f in resampler.resample(frame) + resampler.resample(None):
        f.pts = pts
        pts += f.samples
        for p in stream.encode(f):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def make_video(path, vcodec="libx264", acodec="aac", audio=True, rotation=None, audio_offset=0.0,
               audio_rate=SR, audio_seconds=None):
    with av.open(str(path), "w") as c:
        v = c.add_stream(vcodec, rate=FPS)
        v.width = v.height = SIZE
        v.pix_fmt = "yuv420p"
        v.gop_size = GOP
        if vcodec == "libx264":                               # fixed GOP with B-frames
            v.options = {"g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0", "bf": "2"}
        if rotation is not None:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            seconds = audio_seconds or N_FRAMES / FPS - audio_offset
            a, spec = _encode_audio(c, acodec, _signal(seconds, audio_rate), audio_rate, audio_offset)
        for i in range(N_FRAMES):
            frame = av.VideoFrame.from_ndarray(_frame_image(i), format="rgb24")
            frame.pts = i
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            _write_audio(c, a, spec)
    return path


def make_audio_only(path, codec, rate=SR, seconds=2.0):
    with av.open(str(path), "w") as c:
        a, spec = _encode_audio(c, codec, _signal(seconds, rate), rate, stereo=False)
        _write_audio(c, a, spec)
    return path


def _click_time(x: np.ndarray, rate: int = SR) -> float:
    return float(np.argmax(np.abs(x) > 0.3)) / rate


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    files = {"mp4": make_video(d / "clip.mp4"),
             "rotated": make_video(d / "rotated.mp4", rotation=90, audio=False),
             "silent": make_video(d / "silent.mp4", audio=False),
             "late": make_video(d / "late.mp4", audio_offset=0.5)}
    data = (d / "clip.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    files["truncated"] = d / "truncated.mp4"
    (d / "garbage.mp4").write_bytes(bytes(range(256)) * 8)
    files["garbage"] = d / "garbage.mp4"
    return files


def test_probe_video(media):
    info = video.probe(media["mp4"])
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert info.fps == pytest.approx(FPS)
    assert (info.width, info.height, info.rotation) == (SIZE, SIZE, 0)
    assert (info.sample_rate, info.channels) == (SR, 2)
    assert info.video_start == pytest.approx(0.0) and info.audio_start == pytest.approx(0.0, abs=0.07)
    assert not video.probe(media["silent"]).has_audio
    assert video.probe(media["late"]).audio_start == pytest.approx(0.5, abs=0.07)


def test_read_frame_exact_every_frame(media):
    starts = [i / FPS for i in range(N_FRAMES)]                # a frame is shown from its own pts ...
    ends = [(i + 0.99) / FPS for i in range(N_FRAMES)]         # ... until just before the next one
    for times in (starts, ends):
        assert [_index_of(f) for f in video.read_frames(media["mp4"], times)] == list(range(N_FRAMES))
    for i in (0, 7, 9, 10, 23):                                # one-off reads seek each time
        assert _index_of(video.read_frame(media["mp4"], i / FPS)) == i


def test_read_frame_exact_vs_keyframe(media):
    exact = video.read_frame(media["mp4"], 1.55)
    key = video.read_frame(media["mp4"], 1.55, mode="keyframe")
    assert exact.shape == (SIZE, SIZE, 3) and exact.dtype == np.uint8
    assert _index_of(exact) == 15 and _index_of(key) == 10
    assert _index_of(video.read_frame(media["mp4"], 2.95, mode="keyframe")) == 20
    assert _index_of(video.read_frame(media["mp4"], 3.0)) == N_FRAMES - 1    # the end shows the last
    with pytest.raises(ValueError):
        video.read_frame(media["mp4"], 1.0, mode="nearest")


def test_read_frames_one_pass_any_order(media):
    times = [2.5, 0.3, 1.55, 1.56, 0.3, 0.0, 2.99]
    frames = video.read_frames(media["mp4"], times)
    assert frames.shape == (len(times), SIZE, SIZE, 3)
    assert [_index_of(f) for f in frames] == [25, 3, 15, 15, 3, 0, 29]
    np.testing.assert_array_equal(frames[1], video.read_frame(media["mp4"], 0.3))


def test_rotation_applied(media):
    info = video.probe(media["rotated"])
    assert info.rotation == 90
    img = video.read_frame(media["rotated"], 0.0)
    assert img.shape == (SIZE, SIZE, 3)
    red = np.argwhere((img[..., 0] > 200) & (img[..., 1] < 60))
    # the top-left marker, rotated 90 degrees counter-clockwise, sits at the bottom-left
    assert red[:, 0].min() >= SIZE - 17 and red[:, 1].max() <= 16


def test_read_audio_from_video(media):
    x = video.read_audio(media["mp4"], 0.5, 1.5)
    assert x.shape == (16000,) and x.dtype == np.float32
    assert _click_time(x) == pytest.approx(CLICK_AT - 0.5, abs=0.005)
    assert np.abs(x[:4000]).max() == pytest.approx(0.1, abs=0.02)    # stereo mean: sine 0.2 and silence
    y = video.read_audio(media["mp4"], 0.9, 1.2, sample_rate=8000)
    assert y.shape == (2400,) and _click_time(y, 8000) == pytest.approx(0.1, abs=0.005)


def test_read_audio_late_stream_is_silence_filled(media):
    x = video.read_audio(media["late"], 0.0, 1.0)
    assert x.shape == (16000,)
    assert np.abs(x[: int(0.45 * SR)]).max() < 1e-3
    assert np.abs(x[int(0.55 * SR):]).max() > 0.05
    # the burst is at CLICK_AT seconds after the audio stream start
    assert _click_time(video.read_audio(media["late"], 1.0, 2.0)) == pytest.approx(0.5, abs=0.005)


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_24"), ("wav", "FLOAT")])
def test_read_audio_soundfile_formats(tmp_path, fmt, subtype):
    rate = 44100
    x = _signal(2.0, rate)
    path = tmp_path / f"a.{fmt}"
    sf.write(path, np.stack([x, x], axis=1), rate, subtype=subtype)
    y = video.read_audio(path, 0.5, 1.5)
    assert y.shape == (16000,)
    assert _click_time(y) == pytest.approx(CLICK_AT - 0.5, abs=0.001)
    ref = _signal(2.0, SR)[8000:24000]
    assert np.abs(y[:7000] - ref[:7000]).max() < 0.01        # resampled sine matches the 16 kHz one


def test_read_audio_short_file_repeat_padded(tmp_path):
    x = _signal(1.2, SR)
    path = tmp_path / "short.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    y = video.read_audio(path, 0.2, 3.2)
    assert y.shape == (48000,)
    expected = pad_or_repeat(torch.from_numpy(x[int(0.2 * SR):]), 48000).numpy()
    np.testing.assert_allclose(y, expected, atol=1e-6)


@pytest.mark.parametrize("ext,codec", [("mp3", "libmp3lame"), ("m4a", "aac"), ("ogg", "libopus")])
def test_read_audio_compressed_audio_only(tmp_path, ext, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"encoder {codec} not available")
    rate = 48000 if codec == "libopus" else SR
    path = make_audio_only(tmp_path / f"a.{ext}", codec, rate=rate)
    info = video.probe(path)
    assert info.has_audio and not info.has_video and info.sample_rate == rate
    y = video.read_audio(path, 0.0, 3.0)                      # longer than the 2 s file: padded
    assert y.shape == (48000,)
    assert _click_time(y) == pytest.approx(CLICK_AT, abs=0.006)
    with pytest.raises(DecodeError, match="no video stream"):
        video.read_frame(path, 0.5)


@pytest.mark.parametrize("ext,vcodec,acodec", [("mkv", "libx264", "libopus"), ("webm", "libvpx-vp9", "libopus")])
def test_other_containers(tmp_path, ext, vcodec, acodec):
    if vcodec not in av.codecs_available or acodec not in av.codecs_available:
        pytest.skip(f"{vcodec}/{acodec} encoders not available")
    path = make_video(tmp_path / f"clip.{ext}", vcodec=vcodec, acodec=acodec, audio_rate=48000)
    assert [_index_of(f) for f in video.read_frames(path, [0.0, 1.25, 2.31])] == [0, 12, 23]
    y = video.read_audio(path, 0.5, 1.5)
    assert y.shape == (16000,) and _click_time(y) == pytest.approx(0.5, abs=0.006)


def test_errors(media, tmp_path):
    with pytest.raises(DecodeError, match="not found") as err:
        video.probe(tmp_path / "missing.mp4")
    assert err.value.path.endswith("missing.mp4")
    for key in ("truncated", "garbage"):
        with pytest.raises(DecodeError) as err:
            video.read_frame(media[key], 0.5)
        assert err.value.__cause__ is not None              # the PyAV error is chained, not hidden
    with pytest.raises(DecodeError, match="no audio stream"):
        video.read_audio(media["silent"], 0.0, 1.0)
    with pytest.raises(DecodeError, match="outside the file"):
        video.read_frame(media["mp4"], 3.5)
    with pytest.raises(DecodeError, match="outside the file"):
        video.read_frames(media["mp4"], [0.5, -0.1])
    with pytest.raises(DecodeError, match="outside the file"):
        video.read_audio(media["mp4"], 4.0, 5.0)
    with pytest.raises(ValueError):
        video.read_audio(media["mp4"], 1.0, 1.0)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(DecodeError):
        video.read_audio(empty, 0.0, 1.0)


def test_truncated_file_that_still_opens(tmp_path):
    if "libopus" not in av.codecs_available:
        pytest.skip("libopus encoder not available")
    data = make_video(tmp_path / "clip.mkv", acodec="libopus", audio_rate=48000).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])                  # header intact, second half missing
    assert _index_of(video.read_frame(cut, 0.5)) == 5
    with pytest.raises(DecodeError, match="truncated"):
        video.read_frame(cut, 2.9)
    with pytest.raises(DecodeError, match="truncated"):
        video.read_audio(cut, 0.0, 3.0)


def test_audio_shorter_than_video_is_padded(tmp_path):
    path = make_video(tmp_path / "short_audio.mp4", audio_seconds=1.2)
    y = video.read_audio(path, 0.0, 3.0)
    assert y.shape == (48000,)
    assert _click_time(y) == pytest.approx(CLICK_AT, abs=0.005)
    assert np.abs(y[int(1.3 * SR):]).max() > 0.05             # repeat-padded, not silence
    assert _index_of(video.read_frame(path, 2.95)) == N_FRAMES - 1


def test_still_image_reads_as_one_frame(tmp_path):
    """Datasets keep frames as image files; they go through the same probe and reader."""
    img = _frame_image(12)[:48]
    path = tmp_path / "frame.png"
    with av.open(str(path), "w") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = SIZE, 48, "rgb24"
        for p in list(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24"))) + list(s.encode()):
            c.mux(p)
    info = video.probe(path)
    assert info.has_video and not info.has_audio and (info.width, info.height) == (SIZE, 48)
    np.testing.assert_array_equal(video.read_frame(path, 0.0), img)   # lossless


def test_rgb_conversion_with_a_shared_converter_equals_pyav(tmp_path):
    """to_rgb reuses one swscale converter per thread: the same pixels as PyAV's own conversion,
    also when the frame size changes between calls."""
    small = make_video(tmp_path / "small.mp4", audio=False)
    frames = []
    for path in (small, small):
        with av.open(str(path)) as c:
            frames += [f for _, f in zip(range(3), c.decode(video=0))]
    big = av.VideoFrame.from_ndarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), np.uint8),
                                     format="rgb24").reformat(format="yuv420p")
    for frame in (frames[0], big, *frames[1:], big):
        np.testing.assert_array_equal(video.to_rgb(frame, 0), frame.to_ndarray(format="rgb24"))
