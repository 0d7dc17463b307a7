"""Tiny media files for index tests, encoded with PyAV: a 0.5 s H.264/AAC clip, a wav, png/jpg frames."""
from __future__ import annotations

import functools
import io
from pathlib import Path

import av
import numpy as np

from avfusion.errors import DecodeError


@functools.lru_cache(maxsize=None)
def clip_bytes() -> bytes:
    """A 0.5 s 32x32 H.264 video with 16 kHz mono AAC audio, as mp4 bytes."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=8)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        for k in range(8):
            t = np.arange(k * 1024, (k + 1) * 1024) / 16000
            frame = av.AudioFrame.from_ndarray((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            for p in a.encode(frame):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def image_bytes(fmt: str) -> bytes:
    """A 16x16 image encoded as 'png' or 'jpg'."""
    buf = io.BytesIO()
    codec, pix = ("png", "rgb24") if fmt == "png" else ("mjpeg", "yuvj420p")
    with av.open(buf, "w", format="image2pipe") as c:
        s = c.add_stream(codec, rate=1)
        s.width, s.height, s.pix_fmt = 16, 16, pix
        frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 128, np.uint8), format="rgb24").reformat(format=pix)
        for p in [*s.encode(frame), *s.encode()]:
            c.mux(p)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def wav_bytes() -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, np.float32), 16000, format="WAV")
    return buf.getvalue()


def write(path: Path, kind: str = "auto") -> Path:
    """Write a real file chosen by suffix ('auto'), or a broken one: 'garbage', 'truncated', 'empty'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "auto":
        suffix = path.suffix.lower()
        data = {".mp4": clip_bytes, ".wav": wav_bytes}.get(suffix)
        data = data() if data else image_bytes("png" if suffix == ".png" else "jpg")
    elif kind == "garbage":
        data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    elif kind == "truncated":
        data = clip_bytes()[:300]
    elif kind == "empty":
        data = b""
    else:
        raise ValueError(kind)
    path.write_bytes(data)
    return path


def pyav_probe(path: Path) -> None:
    """Stand-in for avfusion.media.probe: open with PyAV and decode one frame of the first stream."""
    try:
        with av.open(str(path)) as c:
            if not c.streams:
                raise DecodeError(path, "no streams")
            next(c.decode(c.streams[0]))
    except (av.error.FFmpegError, StopIteration, UnicodeDecodeError) as e:
        raise DecodeError(path, f"unreadable ({type(e).__name__})") from None
