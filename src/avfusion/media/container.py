"""Opening media with PyAV (its failures become DecodeError naming the file) and the timeline every
`avfusion.media` module reads on.

Timeline: time 0 is the container's start time (the earliest stream start, as FFmpeg reports it), so a
stream that begins later has a positive start offset. Times are seconds; stream timestamps convert with
`pts_to_seconds` / `seconds_to_pts`.
"""
from __future__ import annotations

import contextlib
import math
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from avfusion.errors import DecodeError

__all__ = ["open_input", "open_quick", "container_start", "pts_to_seconds", "seconds_to_pts", "stream_start",
           "frame_rotation", "file_duration", "declared_end", "video_streams", "has_picture", "TRUNCATION_SLACK"]

#: seconds a stream may fall short of the end it declares before the file counts as truncated (encoders
#: and muxers round stream ends)
TRUNCATION_SLACK = 0.5
_TIME_EPS = 1e-6          # seconds; absorbs float error when turning times into timestamps
_ATTACHED_PIC = 0x0400    # FFmpeg's AV_DISPOSITION_ATTACHED_PIC


def _is_picture(stream) -> bool:
    """An attached picture (an mp3's or m4a's cover art): a "video" stream holding one still image."""
    return bool(int(getattr(stream, "disposition", 0) or 0) & _ATTACHED_PIC)


def video_streams(container) -> list:
    """The container's video streams, attached pictures (cover art) left out: those are not video."""
    return [s for s in container.streams.video if not _is_picture(s)]


def has_picture(container) -> bool:
    """Whether the file carries an attached picture (cover art)."""
    return any(_is_picture(s) for s in container.streams.video)


@contextlib.contextmanager
def open_input(path, **open_options) -> Iterator[av.container.InputContainer]:
    """Open `path` for reading (``open_options``: more keyword arguments of ``av.open``); every PyAV/OS
    failure inside the block becomes DecodeError."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(path, "file not found (check the path and the dataset root)")
    try:
        container = av.open(str(path), mode="r", **open_options)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DecodeError(path, f"cannot open container (damaged or not a media file): {exc}") from exc
    try:
        yield container
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise DecodeError(path, f"decoding failed (damaged or truncated file?): {exc}") from exc
    finally:
        container.close()


def container_start(container) -> Fraction:
    """Container start time in seconds (0 when unknown)."""
    start = container.start_time
    return Fraction(start, av.time_base) if start is not None else Fraction(0)


def pts_to_seconds(pts: int, stream, origin: Fraction) -> float:
    """A stream timestamp -> seconds on the file timeline."""
    return float(pts * stream.time_base - origin)


def seconds_to_pts(t: float, stream, origin: Fraction) -> int:
    """Seconds on the file timeline -> the largest stream timestamp not after t (up to 1 us)."""
    return math.floor((Fraction(t + _TIME_EPS) + origin) / stream.time_base)


def stream_start(stream, origin: Fraction) -> float | None:
    """Where `stream` begins (seconds on the file timeline, to the microsecond); None when it does not say."""
    if stream.start_time is None:
        return None
    return round(pts_to_seconds(stream.start_time, stream, origin), 6)


def file_duration(container) -> float:
    """Container duration in seconds, else the longest stream end, else the last packet end (demuxing)."""
    origin = container_start(container)
    if container.duration is not None and container.duration > 0:
        return float(Fraction(container.duration, av.time_base))
    ends = []
    for s in container.streams:
        if s.duration is not None and s.time_base is not None:
            ends.append(float((s.start_time or 0) * s.time_base + s.duration * s.time_base - origin))
    if ends:
        return max(ends)
    end = 0.0
    for packet in container.demux():
        if packet.pts is not None and packet.time_base is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base - origin))
    container.seek(0)
    return end


def declared_end(container, stream) -> float:
    """Where `stream` says it ends (seconds on the file timeline); the file duration if it does not say."""
    origin = container_start(container)
    if stream.duration:
        start = stream.start_time if stream.start_time is not None else 0
        return float((start + stream.duration) * stream.time_base - origin)
    return file_duration(container)


def frame_rotation(frame) -> int:
    """Counter-clockwise display rotation of a decoded frame, snapped to a multiple of 90 degrees."""
    try:
        rot = float(frame.rotation)
    except (ValueError, OverflowError):          # degenerate display matrix
        return 0
    if math.isnan(rot):
        return 0
    return int(round(rot / 90.0)) * 90 % 360


_MP4_SUFFIXES = (".mp4", ".m4v", ".m4a", ".mov")
_FAST_OPEN = {"skip_frame": "all", "threads": "1"}                  # for the analysis only
_NO_ANALYSIS = {"probesize": "32", "max_analyze_duration": "1", "fpsprobesize": "0"}


def _complete(container) -> bool:
    """Every stream has the parameters decoding needs."""
    video = all(v.width and v.height for v in video_streams(container))
    audio = all((a.codec_context.sample_rate or a.rate) and a.codec_context.channels for a in container.streams.audio)
    return bool(container.streams) and video and audio


@contextlib.contextmanager
def open_quick(path) -> Iterator[av.container.InputContainer]:
    """`open_input`, skipping FFmpeg's stream analysis for MP4/MOV files, whose header already holds every
    parameter (a 10x faster open); other files, or an incomplete header, get the full analysis."""
    path = Path(path)
    if path.suffix.lower() in _MP4_SUFFIXES and path.is_file():
        with open_input(path, options=_FAST_OPEN, container_options=_NO_ANALYSIS) as container:
            if _complete(container):
                yield container
                return
    with open_input(path) as container:
        yield container
