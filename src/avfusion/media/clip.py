"""One open media file serving a sample: its duration, frames and audio windows, from a single open.

`avfusion.media.read_frame` / `read_audio` open the file once per call and probe it; a training sample
needs the duration, a frame and an audio window, so reading them through one `ClipReader` saves two
opens and a decode. Frames equal `read_frames`' (exact mode uses its decoding cursor; keyframe mode
decodes the one keyframe packet). Audio windows come from the package's one audio-window decoder
(`avfusion.media.audio.AudioWindows`) with fast seeking: in indexed containers (MP4/MOV, Matroska/WebM) it
seeks to the window instead of decoding from the file start. MP4/MOV files are opened without FFmpeg's
stream analysis when their header is complete (`open_quick`). Decoding is single-threaded: a data worker
is one core.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np

from avfusion.errors import DecodeError

from .audio import AudioWindows
from .container import (container_start, file_duration, frame_rotation, has_picture, open_quick, seconds_to_pts,
                        video_streams)
from .frames import FRAME_MODES, FrameCursor, frame_at, to_rgb

__all__ = ["ClipReader", "open_clip"]


class ClipReader:
    """Duration, frames and audio windows of one open file (use `open_clip`)."""

    def __init__(self, container, path):
        self.container, self.path = container, path
        self.duration = file_duration(container)
        self.has_video = bool(video_streams(container))
        self.has_audio = bool(container.streams.audio)
        self.has_picture = has_picture(container)     # cover art: not video
        self._cursor: FrameCursor | None = None
        self._configured = False
        self._audio = AudioWindows(container, path, self.duration, fast_seek=True)

    def _video_stream(self):
        stream = video_streams(self.container)[0]
        if not self._configured:                     # thread settings only before the first decode
            stream.thread_type = "NONE"
            stream.codec_context.thread_count = 1
            self._configured = True
        return stream

    def _keyframe(self, t: float):
        """The keyframe at or before t: one packet decoded and drained (no reordering delay).

        None when the demuxer does not land on a keyframe (no index); the caller then decodes.
        """
        stream = self._video_stream()
        target = seconds_to_pts(t, stream, container_start(self.container))
        start = stream.start_time if stream.start_time is not None else 0
        self.container.seek(max(target, start), stream=stream, backward=True)
        self._cursor = None                          # the demuxer moved under any cursor
        packet = next((p for p in self.container.demux(stream) if p.size), None)
        if packet is None or not packet.is_keyframe or packet.pts is None or packet.pts > max(target, start):
            return None
        ctx = stream.codec_context
        frames = [*ctx.decode(packet), *ctx.decode(None)]
        ctx.flush_buffers()
        return frames[0] if frames else None

    def frames(self, times: Sequence[float], mode: str = "exact") -> np.ndarray:
        """(N, H, W, 3) uint8 frames shown at `times` (see `avfusion.media.frames.read_frames`)."""
        if mode not in FRAME_MODES:
            raise ValueError(f"mode must be one of {FRAME_MODES}, got {mode!r}")
        if not self.has_video:
            raise DecodeError(self.path, "no video stream")
        times = [float(t) for t in times]
        for t in times:
            if not 0.0 <= t <= self.duration:
                raise DecodeError(self.path, f"time {t:.3f} s outside the file (0 .. {self.duration:.3f} s)")
        self._audio.moved = True                     # audio windows no longer decode on from the open
        out: list[np.ndarray | None] = [None] * len(times)
        for i in sorted(range(len(times)), key=times.__getitem__):
            frame = self._keyframe(times[i]) if mode == "keyframe" else None
            if frame is None:
                if self._cursor is None:
                    self._video_stream()
                    self._cursor = FrameCursor(self.container, self.path)
                frame = frame_at(self._cursor, times[i], mode)
            out[i] = to_rgb(frame, frame_rotation(frame))
        return out[0][None] if len(out) == 1 else np.stack(out)    # one frame: no copy

    def audio(self, start: float, end: float, sample_rate: int = 16000) -> np.ndarray:
        """Mono float32 samples of [start, end) at `sample_rate`, as `avfusion.media.read_audio` returns
        (see `AudioWindows.read`)."""
        self._cursor = None                          # the demuxer moves under any frame cursor
        return self._audio.read(start, end, sample_rate)


@contextlib.contextmanager
def open_clip(path) -> Iterator[ClipReader]:
    """A `ClipReader` on `path`; PyAV failures inside the block become `DecodeError`."""
    with open_quick(path) as container:
        yield ClipReader(container, path)
