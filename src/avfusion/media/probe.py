"""Probing: the stream facts of a media file (`MediaInfo`), read from its container and first video frame."""
from __future__ import annotations

from dataclasses import dataclass

from avfusion.errors import DecodeError

from .container import (container_start, file_duration, frame_rotation, has_picture, open_input, stream_start,
                        video_streams)

__all__ = ["MediaInfo", "probe", "read_info"]


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


def probe(path) -> MediaInfo:
    """Stream facts of a media file (container, streams, first-frame rotation)."""
    with open_input(path) as container:
        return read_info(container, path)


def read_info(container, path) -> MediaInfo:
    """Fill a MediaInfo from an open container (decodes the first video frame to read rotation)."""
    origin = container_start(container)
    videos = video_streams(container)
    info: dict = {"path": str(path), "duration": file_duration(container), "has_video": bool(videos),
                  "has_audio": bool(container.streams.audio), "has_picture": has_picture(container)}
    if container.streams.audio:
        a = container.streams.audio[0]
        info.update(sample_rate=a.codec_context.sample_rate or a.rate,
                    channels=a.codec_context.channels, audio_start=stream_start(a, origin))
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
                    video_start=stream_start(v, origin))
    return MediaInfo(**info)
