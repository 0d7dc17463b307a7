"""Decoding media files with PyAV: the one place the package reads containers, frames and audio.

    container.py  opening a file (`open_input`; `open_quick` skips FFmpeg's analysis for MP4/MOV), the file
                  timeline (time 0 = container start) and stream facts every other module reads
    probe.py      `probe(path) -> MediaInfo`: duration, streams, displayed frame size, rotation
    frames.py     the frame shown at a time (`read_frame(s)`, `FrameCursor`, `frame_at`), `every_frame`, RGB
    samples.py    decoded audio frames -> mono samples placed on the file timeline
    audio.py      audio windows: the one decoder (`AudioWindows`), `read_audio`, `audio_frames`
    clip.py       `open_clip(path) -> ClipReader`: duration, frames and audio windows from one open (the
                  data loader's fast path, and inference's)
    images.py     still images and masks (`read_image`, `read_mask`)
    transcode.py  re-encoding a video for fast training reads (`avfusion data prepare`)

Failures of an input raise `avfusion.errors.DecodeError` naming the file. The package imports nothing of
avfusion but its errors and the signal functions of `avfusion.audio` (resampling, the repeat rule).
"""
from __future__ import annotations

from .audio import AudioWindows, audio_frames, read_audio
from .clip import ClipReader, open_clip
from .frames import FrameCursor, every_frame, frame_at, read_frame, read_frames, to_rgb
from .images import read_image, read_mask
from .probe import MediaInfo, probe

__all__ = ["MediaInfo", "probe", "read_frame", "read_frames", "every_frame", "FrameCursor", "frame_at", "to_rgb",
           "read_audio", "audio_frames", "AudioWindows", "ClipReader", "open_clip", "read_image", "read_mask"]
