"""Decoding video frames: the frame shown at a time, every frame of a stream, RGB conversion.

Times are seconds on the file timeline: 0 is the container start (see `avfusion.media.container`).
`read_frame(path, t)` returns the frame DISPLAYED at t: the last frame whose presentation time is
<= t, found by seeking to the previous keyframe and decoding forward. Past the end of a video stream
that is shorter than the file, the last frame stays displayed; a stream that stops early against its
own declared length is a truncated file (DecodeError). Frames come back as
(H, W, 3) uint8 RGB with the display-matrix rotation applied (flips in the matrix are ignored).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Iterator, Sequence

import numpy as np
from av.video.reformatter import VideoReformatter

from avfusion.errors import DecodeError

from .container import (container_start, declared_end, frame_rotation, open_input, pts_to_seconds, seconds_to_pts,
                        video_streams)
from .probe import MediaInfo, read_info

log = logging.getLogger(__name__)

__all__ = ["FRAME_MODES", "read_frame", "read_frames", "FrameCursor", "frame_at", "to_rgb", "every_frame"]

#: how a frame is chosen for a time: "exact" (the frame displayed then) or "keyframe" (the keyframe at or
#: before it, cheaper)
FRAME_MODES = ("exact", "keyframe")
_END_SLACK_FRAMES = 2     # a decode that stops this many frame periods before t means a truncated file


_local = threading.local()


def _reformatter() -> VideoReformatter:
    """This thread's (and process's) swscale converter. `frame.to_ndarray(format=...)` builds a new
    one, with its tables and a pool of slice threads, for every frame; reusing one single-threaded
    converter gives the same pixels at about half the CPU (it rebuilds itself when the frame size or
    format changes). Keyed by process id: a forked data worker must not reuse its parent's."""
    pid = os.getpid()
    if getattr(_local, "pid", None) != pid:
        _local.reformatter, _local.pid = VideoReformatter(), pid
    return _local.reformatter


def to_rgb(frame, rotation: int) -> np.ndarray:
    """VideoFrame -> (H, W, 3) uint8 RGB as displayed (rotated counter-clockwise by `rotation`)."""
    img = _reformatter().reformat(frame, format="rgb24", threads=1).to_ndarray()
    if rotation:
        img = np.ascontiguousarray(np.rot90(img, k=rotation // 90))
    return img


class FrameCursor:
    """Forward decoding over the first video stream of an open container (cover art left out), seeking
    only when a target lies past the next keyframe. `avfusion.media.clip.ClipReader` keeps one per open
    file and asks it for frame after frame with :func:`frame_at`."""

    def __init__(self, container, path):
        self.container, self.path = container, path
        self.stream = video_streams(container)[0]
        self.origin = container_start(container)
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.period = 1.0 / float(rate) if rate else 0.04
        self._frames = None        # decode iterator since the last seek
        self.prev = None           # last frame with pts <= the last target
        self.ahead = None          # first frame with pts > the last target
        self.eof = False

    def pts(self, frame) -> int:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            raise DecodeError(self.path, "decoded frame carries no timestamp")
        return pts

    def seek(self, target_pts: int) -> None:
        start = self.stream.start_time if self.stream.start_time is not None else 0
        self.container.seek(max(target_pts, start), stream=self.stream, backward=True)
        self._frames = self.container.decode(self.stream)
        self.prev = self.ahead = None
        self.eof = False

    def _next(self):
        if self.ahead is None and not self.eof:
            self.ahead = next(self._frames, None)
            self.eof = self.ahead is None
        return self.ahead

    def first(self):
        """The first frame decoded after the last seek (the keyframe the demuxer landed on)."""
        frame = self._next()
        if frame is None:
            raise DecodeError(self.path, "no frame could be decoded after seeking (truncated file?)")
        return frame

    def advance(self, target_pts: int):
        """Consume frames up to target_pts; return the last one with pts <= target (None if none)."""
        while (frame := self._next()) is not None and self.pts(frame) <= target_pts:
            self.prev, self.ahead = frame, None
        return self.prev

    def needs_seek(self, target_pts: int) -> bool:
        """True when decoding forward from here would be slower than seeking to target's keyframe."""
        if self._frames is None:
            return True
        here = self.prev if self.prev is not None else self.ahead
        if here is None or target_pts < self.pts(here):
            return True
        entries = self.stream.index_entries
        if len(entries) == 0:
            return False
        idx = entries.search_timestamp(target_pts, backward=True)
        return idx >= 0 and entries[idx].timestamp > self.pts(here)


def every_frame(container, path) -> Iterator[tuple[np.ndarray, float]]:
    """Every frame of the first video stream of an open container (cover art left out), from its start, as
    decoded: (H, W, 3) uint8 RGB as displayed (the frame's display-matrix rotation applied) and its
    presentation time in seconds on the file timeline, read from the frame's own timestamp, so a variable
    frame rate is kept (a frame without one is placed k nominal frame periods after 0). The frame shown at
    such a time by :func:`frame_at` is this one."""
    cursor = FrameCursor(container, path)
    for k, frame in enumerate(container.decode(cursor.stream)):
        t = pts_to_seconds(frame.pts, cursor.stream, cursor.origin) if frame.pts is not None else k * cursor.period
        yield to_rgb(frame, frame_rotation(frame)), t


def _check_time(info: MediaInfo, path, t: float) -> None:
    if not info.has_video:
        raise DecodeError(path, "no video stream")
    if not (0.0 <= t <= info.duration):
        raise DecodeError(path, f"time {t:.3f} s outside the file (0 .. {info.duration:.3f} s)")


def frame_at(cursor: FrameCursor, t: float, mode: str):
    """The frame shown at time t (seconds on the file timeline), decoded with `cursor`: "exact" (the frame
    whose display interval holds t) or "keyframe" (the keyframe at or before t, much cheaper). Convert it
    with :func:`to_rgb`."""
    target = seconds_to_pts(t, cursor.stream, cursor.origin)
    if mode == "keyframe":
        cursor.seek(target)
        return cursor.first()
    if cursor.needs_seek(target):
        cursor.seek(target)
    frame = cursor.advance(target)
    if frame is None:
        first = cursor.first()
        start = cursor.stream.start_time or 0
        if cursor.pts(first) <= start or target < start:
            return first           # t precedes the first video frame: show the first frame
        log.debug("%s: seek landed after t=%.3f; decoding from the stream start", cursor.path, t)
        cursor.seek(start)
        frame = cursor.advance(target) or cursor.first()
    if cursor.eof:
        last_t = pts_to_seconds(cursor.pts(frame), cursor.stream, cursor.origin)
        slack = _END_SLACK_FRAMES * cursor.period
        if t > last_t + slack and last_t + slack < declared_end(cursor.container, cursor.stream):
            raise DecodeError(cursor.path, f"video ends at {last_t:.3f} s, before t={t:.3f} s "
                                           "(truncated file?)")
    return frame


def read_frame(path, time: float, mode: str = "exact") -> np.ndarray:
    """(H, W, 3) uint8 RGB frame shown at `time` seconds.

    mode "exact": the last frame with presentation time <= time (decodes from the previous keyframe).
    mode "keyframe": fast approximation, the keyframe at or before `time` (no forward decoding);
    it can be up to one GOP early.
    """
    return read_frames(path, [time], mode=mode)[0]


def read_frames(path, times: Sequence[float], mode: str = "exact") -> np.ndarray:
    """(N, H, W, 3) uint8 frames at `times` (any order, repeats allowed), in one pass over the file.

    Times are visited in sorted order; the decoder seeks only when the next time lies beyond the
    next keyframe, otherwise it keeps decoding forward.
    """
    if mode not in FRAME_MODES:
        raise ValueError(f"mode must be one of {FRAME_MODES}, got {mode!r}")
    times = [float(t) for t in times]
    if not times:
        raise ValueError("read_frames needs at least one time")
    with open_input(path) as container:
        info = read_info(container, path)
        for t in times:
            _check_time(info, path, t)
        cursor = FrameCursor(container, path)
        out: list[np.ndarray | None] = [None] * len(times)
        for i in sorted(range(len(times)), key=times.__getitem__):
            frame = frame_at(cursor, times[i], mode)
            out[i] = to_rgb(frame, info.rotation)
    return np.stack(out)
