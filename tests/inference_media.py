"""Generated videos close to real files, and tiny random models, for the inference tests.

`write_clip` frames are one flat grey level each, `grey(k)` for frame k (so a decoded frame tells
its index, whatever the resizing), with a white marker in the top-left corner as stored (so the
displayed orientation tells whether rotation was applied). The audio is a 440 Hz tone.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

NTSC = Fraction(30000, 1001)


def grey(k: int) -> int:
    return 16 + (6 * k) % 224


def frame_index(level: float) -> int:
    """The frame index (mod 224 / 6) that a decoded grey level came from."""
    return int(round((level - 16) / 6))


def write_clip(path: Path, seconds: float = 2.0, *, size=(64, 48), fps=NTSC, codec: str = "libx264",
               audio: str | None = "aac", rate: int = 48000, layout: str = "stereo", rotation: int | None = None,
               vfr: bool = False, audio_offset: float = 0.0, audio_seconds: float | None = None,
               pix_fmt: str = "yuv420p", container: str | None = None, freq: float = 440.0,
               faststart: bool = False, video_offset: float = 0.0) -> Path:
    """Write a video: `codec` libx264 (mp4) or libvpx-vp9 (webm, with audio "libopus"); `audio` None for a
    video-only file; `vfr` alternates frame durations 1/fps and 2/fps; `audio_offset` delays the audio;
    `faststart` puts the index first (as streaming sites do), so that a cut file still opens;
    `video_offset` starts the pictures later than the sound."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    tb = Fraction(1, 90000)
    options = {"movflags": "faststart"} if faststart else None
    with av.open(str(path), "w", format=container, options=options) as c:
        v = c.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        timed = vfr or video_offset > 0
        if timed:
            v.time_base = v.codec_context.time_base = tb
        if codec == "libx264":
            v.options = {"g": "12", "bf": "2"}
        if rotation is not None:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream(audio, rate=rate)
            a.layout = layout
        t, k = 0.0, 0
        while t < seconds - 1e-9:
            img = np.full((h, w, 3), grey(k), np.uint8)
            img[:6, :6] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if timed:
                frame.pts, frame.time_base = int(round((video_offset + t) / tb)), tb
            for p in v.encode(frame):
                c.mux(p)
            t += float(1 / fps) * (2 if (vfr and k % 2) else 1)
            k += 1
        for p in v.encode():
            c.mux(p)
        if a is not None:
            channels = av.AudioLayout(layout).nb_channels
            total = int(round((audio_seconds or seconds) * rate))
            start = int(round(audio_offset * rate))
            for s in range(0, total, 960):
                n = min(960, total - s)
                x = (0.3 * np.sin(2 * np.pi * freq * (s + np.arange(n)) / rate)).astype(np.float32)
                f = av.AudioFrame.from_ndarray(np.repeat(x[None], channels, 0), format="fltp", layout=layout)
                f.sample_rate, f.pts, f.time_base = rate, start + s, Fraction(1, rate)
                for p in a.encode(f):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def write_cover_art_mp3(path: Path, seconds: float = 2.0, rate: int = 16000) -> Path:
    """An mp3 with cover art: a tone plus an attached picture (a one-image "video" stream)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        audio = out.add_stream("mp3", rate=rate)
        audio.layout = "mono"
        picture = out.add_stream("mjpeg", rate=1)
        picture.width, picture.height, picture.pix_fmt = 32, 32, "yuvj420p"
        picture.disposition = av.stream.Disposition.attached_pic
        image = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
        for packet in [*picture.encode(image.reformat(format="yuvj420p")), *picture.encode(None)]:
            out.mux(packet)
        t = np.arange(int(seconds * rate)) / rate
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                           format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)
    return path


def truncate(path: Path, fraction: float = 0.5) -> Path:
    """Keep the first `fraction` of the bytes (an interrupted download)."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


TINY = dict(image_size=(32, 32), audio_size=(32, 32), embed_dim=32, depth=2, num_heads=2, fusion_num_heads=2)


def tiny_models(root: Path) -> dict[str, Path]:
    """save_pretrained directories of tiny random models (encoder, classify, separate, segment, localize)
    and an official-format classifier file. Images 32 x 32; spectrograms 32 mels x 32 frames = 0.5 s."""
    import torch

    import avfusion
    from avfusion.checkpoints import save_pretrained
    from avfusion.models import EncoderConfig, build_model
    from avfusion.models.localization import ContrastiveLocalizer

    torch.manual_seed(0)
    config = EncoderConfig(**TINY)
    models = {
        "encoder": build_model("encoder", config),
        "classify": build_model("classify", config, num_classes=4, class_names=["dog", "cat", "bird", "car"]),
        "separate": build_model("separate", config),
        "segment": build_model("segment", EncoderConfig(**{**TINY, "embed_dim": 128})),
        "localize": ContrastiveLocalizer(build_model("encoder", config), proj_dim=8, hidden_dim=0),
    }
    paths = {}
    for name, model in models.items():
        save_pretrained(model.eval(), root / name)
        paths[name] = root / name
    # Official layout; width 192 so that the head count (3) is the official default for its width.
    official = build_model("classify", EncoderConfig(**{**TINY, "embed_dim": 192, "depth": 1, "num_heads": 3,
                                                        "fusion_num_heads": 3}), num_classes=4).eval()
    paths["official"] = root / "classify_official.pth"
    avfusion.export_official(official, paths["official"])
    return paths
