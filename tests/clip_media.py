"""Small generated media for data-pipeline tests: clips whose frames and audio say where they are.

`video(path)`: H.264 frames of one flat grey level each, 20 + 8 * frame index (so a decoded frame,
even cropped and resized, tells its index; at most 29 frames), keyframe every `gop` frames; AAC or none.
"""
from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

FPS = 10
RATE = 16000


def grey(k: int) -> int:
    """Grey level of frame k."""
    return 20 + 8 * k


def frame_index(level: float) -> int:
    """Frame index from a decoded grey level."""
    return int(round((level - 20) / 8))


def tone(num: int, start: int = 0, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = (start + np.arange(num)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def video(path: Path, seconds: float = 2.0, *, gop: int = 8, audio: str = "tone", size=(64, 48),
          frozen: bool = False, faststart: bool = False, rotation: int | None = None) -> Path:
    """Write an mp4: `audio` is 'tone', 'silent' or 'none'; `frozen` repeats frame 0; `faststart`
    puts the header first (as streaming sites do: a cut download still opens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    n = int(round(seconds * FPS))
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else None) as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
        if rotation is not None:
            v.set_display_rotation(rotation)
        a = None
        if audio != "none":
            a = c.add_stream("aac", rate=RATE)
            a.layout = "mono"
        for k in range(n):
            image = np.full((h, w, 3), grey(0 if frozen else k), np.uint8)
            if rotation is not None:
                image[:4, :4] = 255                                   # a marker in the top-left corner
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            total = int(round(seconds * RATE))
            for s in range(0, total, 1024):
                x = tone(min(1024, total - s), s) * (0.0 if audio == "silent" else 1.0)
                f = av.AudioFrame.from_ndarray(x[None], format="fltp", layout="mono")
                f.sample_rate, f.pts = RATE, s
                for p in a.encode(f):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def truncate(path: Path, fraction: float) -> Path:
    """Keep the first `fraction` of the file's bytes (an interrupted download)."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def wav(path: Path, seconds: float = 5.0) -> Path:
    import soundfile as sf
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(int(seconds * RATE)), RATE)
    return path


def png(path: Path, array: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 as RGB, (H, W) uint8 as grey."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "rgb24" if array.ndim == 3 else "gray"
    buf = io.BytesIO()
    with av.open(buf, "w", format="image2pipe") as c:
        s = c.add_stream("png", rate=1)
        s.height, s.width = array.shape[:2]
        s.pix_fmt = fmt
        for p in [*s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=fmt)), *s.encode()]:
            c.mux(p)
    path.write_bytes(buf.getvalue())
    return path
