"""Demo footage with known content: AV-Digits written as ordinary MP4 files with sound.

`write_avdigits_video`: scenes (1-3 handwritten digits, exactly one of them spoken) one after the
other, each shown for the 1 s of its audio, so a localiser should move its peak to each scene's
speaking digit in turn. `write_avdigits_mixture_video`: two scenes side by side, both speaking at
once (an AV-Digits mixture), so each half of the picture should pick out its own voice. The files
look like camera footage: H.264 at 30000/1001 fps, AAC stereo at 48 kHz.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

FPS = Fraction(30000, 1001)
AUDIO_RATE = 48000


def _write(path: str | Path, pictures: Sequence[np.ndarray], seconds: Sequence[float], audio: np.ndarray,
           audio_rate: int) -> None:
    """pictures[i] shown for seconds[i], one after the other; `audio` (samples,) mono at `audio_rate`."""
    import av

    from avfusion.audio import resample

    h, w = pictures[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast"}
        sound = out.add_stream("aac", rate=AUDIO_RATE)
        sound.layout = "stereo"
        k, end = 0, 0.0
        for picture, duration in zip(pictures, seconds):
            end += duration
            while k / FPS < end - 1e-9:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                frame.pts = k
                for packet in video.encode(frame):
                    out.mux(packet)
                k += 1
        for packet in video.encode():
            out.mux(packet)
        wave = resample(audio.astype(np.float32), audio_rate, AUDIO_RATE)
        stereo = np.clip(np.stack([wave, wave]), -1.0, 1.0).astype(np.float32)
        for s in range(0, stereo.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, s:s + 1024]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, s, Fraction(1, AUDIO_RATE)
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(image, scale, 0), scale, 1)


def write_avdigits_video(path: str | Path, indices: Sequence[int] = (0, 1, 2), split: str = "test", seed: int = 0,
                         image_size: int = 96, scale: int = 3) -> list[dict]:
    """Write scenes `indices` of `split` to `path` (mp4). Returns per scene its `start`/`end` (s), `label`,
    the speaking digit's `box` (x0, y0, x1, y1), every digit's `boxes` and the speaking one's position
    in them (`sounding`); boxes in video pixels (`scale` x the scene's)."""
    from avfusion.data.avdigits import SAMPLE_RATE, render_scene

    scenes = [render_scene(split, int(i), seed=seed, image_size=image_size) for i in indices]
    seconds = [len(s["audio"]) / SAMPLE_RATE for s in scenes]
    _write(path, [_upscale(s["image"], scale) for s in scenes], seconds,
           np.concatenate([s["audio"] for s in scenes]), SAMPLE_RATE)
    info, t0 = [], 0.0
    for scene, duration in zip(scenes, seconds):
        k = int(scene["num_digits"])
        info.append({"start": t0, "end": t0 + duration, "label": int(scene["label"]),
                     "box": [int(v) * scale for v in scene["box"]], "sounding": int(scene["sounding"]),
                     "boxes": [[int(v) * scale for v in b] for b in scene["boxes"][:k]]})
        t0 += duration
    return info


def write_avdigits_mixture_video(path: str | Path, index: int = 0, split: str = "test", seed: int = 0,
                                 image_size: int = 96, scale: int = 3) -> dict:
    """Write mixture `index` of `split`: its two scenes side by side, the sum of their voices as the sound.
    Returns `labels` (left, right), each half's `region` (x0, y0, x1, y1) in video pixels, and the
    `sources` (2, samples) and `mixture` waveforms at 16 kHz."""
    from avfusion.data.avdigits import SAMPLE_RATE, render_mixture

    mix = render_mixture(split, int(index), seed=seed, image_size=image_size)
    picture = _upscale(np.concatenate([mix["image"][0], mix["image"][1]], axis=1), scale)
    _write(path, [picture], [mix["mixture"].shape[0] / SAMPLE_RATE], mix["mixture"], SAMPLE_RATE)
    side = image_size * scale
    return {"labels": [int(v) for v in mix["label"]], "regions": [[0, 0, side, side], [side, 0, 2 * side, side]],
            "sources": mix["target"], "mixture": mix["mixture"]}
