"""Opening media with PyAV, mapping its failures to DecodeError, and reading stream facts (`MediaInfo`).

Timeline convention used by `avfusion.video`: time 0 is the container's start time (the earliest
stream start, as FFmpeg reports it), so a stream that begins later has a positive `*_start` offset.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from .errors import DecodeError

__all__ = ["MediaInfo", "open_input", "container_start", "pts_to_seconds", "seconds_to_pts",
           "read_info", "frame_rotation", "file_duration", "declared_end", "video_streams", "has_picture"]

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


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` learns about a file. Times in seconds on the file timeline (0 = container start).

    width/height are the DISPLAYED size (after rotation), the shape `read_frame` returns;
    rotation is counter-clockwise degrees (0, 90, 180, 270) applied to decoded frames.
    """
    path: str
    duration: float
    has_video: bool
    has_audio: bool
    has_picture: bool = False         # an attached picture (cover art), which is not video
    fps: float | None = None          # average frame rate of the first video stream
    num_frames: int | None = None     # as the container declares it (None if unknown)
    width: int | None = None
    height: int | None = None
    rotation: int = 0
    sample_rate: int | None = None    # first audio stream
    channels: int | None = None
    video_start: float | None = None
    audio_start: float | None = None


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


def _stream_start(stream, origin: Fraction) -> float | None:
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


def read_info(container, path) -> MediaInfo:
    """Fill a MediaInfo from an open container (decodes the first video frame to read rotation)."""
    origin = container_start(container)
    videos = video_streams(container)
    info: dict = {"path": str(path), "duration": file_duration(container), "has_video": bool(videos),
                  "has_audio": bool(container.streams.audio), "has_picture": has_picture(container)}
    if container.streams.audio:
        a = container.streams.audio[0]
        info.update(sample_rate=a.codec_context.sample_rate or a.rate,
                    channels=a.codec_context.channels, audio_start=_stream_start(a, origin))
    if videos:
        v = videos[0]
        frame = next(container.decode(v), None)
        if frame is None:
            raise DecodeError(path, "video stream holds no decodable frame")
        rotation = frame_rotation(frame)
        w, h = frame.width, frame.height
        if rotation in (90, 270):
            w, h = h, w
        info.update(fps=float(v.average_rate) if v.average_rate else None,
                    num_frames=v.frames or None, width=w, height=h, rotation=rotation,
                    video_start=_stream_start(v, origin))
    return MediaInfo(**info)
