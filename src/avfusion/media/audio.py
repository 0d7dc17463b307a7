"""Audio windows: mono samples of [start, end) seconds from any PyAV-readable file (video containers and
audio-only files), through one decoder, `AudioWindows`.

`read_audio(path, start, end)` opens the file and decodes the window from the stream start (exact for every
format; windows starting after `SEEK_AFTER` s seek). `avfusion.media.clip.ClipReader` keeps one
`AudioWindows` per open file with `fast_seek`: in indexed containers (MP4/MOV, Matroska/WebM) it seeks to
each window with a pre-roll instead. AAC bands coded as noise (perceptual noise substitution) are regenerated
from the decoder's running random state, so after such a seek those samples differ from a decode from the
start (same spectrum), identically on every read.

Frames are placed on the file timeline by their timestamps (gaps and a late stream start stay silent) and
mixed to mono; float frames (what AAC, Opus and Vorbis decode to) are summed over channels straight from
their planes (`frame_to_mono`'s arithmetic without PyAV's costly per-frame `to_ndarray`). While a window is
demuxed the other streams' packets are skipped. The native-rate window is then resampled
(`avfusion.audio.resample`) and, where the audio ends early, extended with the official repeat rule
(`avfusion.audio.pad_or_repeat`).
"""
from __future__ import annotations

import contextlib
import logging
import math
from fractions import Fraction
from typing import Any, Iterator

import numpy as np
import torch
from av.stream import Discard

from avfusion.audio import pad_or_repeat, resample
from avfusion.errors import DecodeError

from .container import TRUNCATION_SLACK, container_start, declared_end, file_duration, open_input, seconds_to_pts
from .samples import Buffer, Placer, frame_to_mono

log = logging.getLogger(__name__)

__all__ = ["AudioWindows", "read_audio", "audio_frames", "frame_to_mono", "SEEK_AFTER"]

#: `read_audio` decodes windows starting within this many seconds from the stream start without seeking:
#: exact for every format (seeking in MP3 without an index lands on estimated timestamps, off by up to ~60 ms
#: in FFmpeg), and cheap for clips of this length. Later windows seek (approximate for MP3).
SEEK_AFTER = 60.0
_MARGIN = 0.05            # seconds decoded beyond each end of a window, as resampling context
_PRE_ROLL = 0.15          # fast seeks: at least this many seconds, and two codec frames, before the window
_INDEXED_FORMATS = ("mov", "mp4", "matroska", "webm")


def audio_frames(container, path) -> Iterator[tuple[Any, int]]:
    """The first audio stream's frames, decoded from where the demuxer stands, each with the index of its
    first sample on the file timeline at the stream's own rate: from its timestamp, else right after the
    previous frame (DecodeError when the first frame has none)."""
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or stream.rate
    origin = container_start(container)
    following = None
    for frame in container.decode(stream):
        if frame.pts is not None:
            start = round(Fraction(frame.pts) * stream.time_base * rate - origin * rate)
        elif following is not None:
            start = following
        else:
            raise DecodeError(path, "audio frame carries no timestamp")
        following = start + frame.samples
        yield frame, start


def _check_span(start: float, end: float) -> None:
    if not end > start:
        raise ValueError(f"end ({end}) must be after start ({start})")


class AudioWindows:
    """The audio-window decoder of one open container: `read(start, end, rate)` gives a window's mono
    samples. `fast_seek=False` (what `read_audio` uses) decodes from the stream start and seeks only for
    windows after `SEEK_AFTER` s; `fast_seek=True` (the dataset reader's) seeks to every window in indexed
    containers, a pre-roll early. Whoever else decodes from the same container sets `moved`, so that the
    next window restarts from the stream start rather than from where the demuxer was left."""

    def __init__(self, container, path, duration: float | None = None, fast_seek: bool = False):
        self.container, self.path = container, path
        self.duration = duration                # the file's, when the caller already knows it
        self.fast_seek = fast_seek
        self.moved = False                      # the demuxer left its initial position

    def read(self, start: float, end: float, sample_rate: int = 16000) -> np.ndarray:
        """Mono float32 samples of [start, end) seconds at `sample_rate`: exactly round((end-start)*rate).

        Channels are averaged; the native rate is converted with `avfusion.audio.resample`. Silence fills
        the time before a late-starting audio stream. When the audio ends before `end` (a file shorter than
        asked), the available part is extended with the official repeat rule (`avfusion.audio.pad_or_repeat`).
        Audio that stops more than `TRUNCATION_SLACK` s before the stream's declared end is a truncated
        file: DecodeError.
        """
        _check_span(start, end)
        if not self.container.streams.audio:
            raise DecodeError(self.path, "no audio stream")
        num = int(round((end - start) * sample_rate))
        if self.duration is None:
            self.duration = file_duration(self.container)
        stream = self.container.streams.audio[0]
        stream_end = declared_end(self.container, stream)
        if start < 0 or start >= self.duration:
            raise DecodeError(self.path, f"start {start:.3f} s outside the file (0 .. {self.duration:.3f} s)")
        samples, rate, lo, reached_end = self.decode(stream, max(0.0, start - _MARGIN), end + _MARGIN)
        audio_end = (lo + samples.shape[0]) / rate
        if reached_end and audio_end <= start:
            raise DecodeError(self.path, f"audio stream holds no samples at or after {start:.3f} s "
                                         "(empty or truncated stream)")
        if reached_end and audio_end < min(end, stream_end) - TRUNCATION_SLACK:
            raise DecodeError(self.path, f"audio stops at {audio_end:.3f} s but the stream declares "
                                         f"{stream_end:.3f} s (truncated file?)")
        out = resample(samples, rate, sample_rate)
        offset = int(round((start - lo / rate) * sample_rate))              # window start in `out`
        out = out[offset:offset + num]
        if out.shape[0] < num:
            log.debug("%s: audio ends before %.3f s; repeat-padding %d samples", self.path, end, num - out.shape[0])
            out = pad_or_repeat(torch.from_numpy(np.ascontiguousarray(out)), num).numpy()
        return np.ascontiguousarray(out, dtype=np.float32)

    def seek_plan(self, stream, first: float) -> tuple[int | None, int]:
        """(timestamp to seek to before decoding from `first` s, None: decode on from where the demuxer
        stands; timestamp to restart from when that seek lands after the window)."""
        origin = container_start(self.container)
        if self.fast_seek:
            restart = (stream.start_time or 0) - int(1 / stream.time_base) - 1      # before every packet
            if any(n in self.container.format.name.split(",") for n in _INDEXED_FORMATS):
                # the frame decoded without its predecessor (and a codec's priming packet) lies before `first`
                rate = stream.codec_context.sample_rate or stream.rate or 1
                pre_roll = max(_PRE_ROLL, 2.0 * (stream.codec_context.frame_size or 0) / rate)
                return seconds_to_pts(first - pre_roll, stream, origin), restart
            # other demuxers may refuse a timestamp below 0 (MP3's: EPERM) and need none below the stream start
            restart = max(restart, min(stream.start_time or 0, 0))
        else:
            restart = stream.start_time or 0
            if first > SEEK_AFTER:
                return max(seconds_to_pts(first, stream, origin), restart), restart
        return (restart if self.moved else None), restart

    def decode(self, stream, first: float, last: float) -> tuple[np.ndarray, int, int, bool]:
        """Native-rate mono samples covering [first, last) seconds of `stream`.

        Returns (samples, native_rate, index of samples[0] on the file timeline, reached_end: the stream
        ended before `last`). A seek that lands after `first`, or on nothing, is retried once from the
        stream start.
        """
        rate = stream.codec_context.sample_rate or stream.rate
        place = Placer(stream.time_base, rate, container_start(self.container))
        lo, hi = math.floor(first * rate), math.ceil(last * rate)
        seek_to, restart = self.seek_plan(stream, first)
        with _only(self.container, stream):
            for _attempt in range(2):
                if seek_to is not None:
                    self.container.seek(seek_to, stream=stream, backward=True)
                self.moved = True
                buf, filled_to, cursor, reached_end = None, lo, None, True
                for frame in self.container.decode(stream):
                    pts = frame.pts
                    if pts is not None:
                        begin = pts - place.shift if place.direct else place(pts)
                    elif cursor is not None:
                        begin = cursor
                    else:
                        raise DecodeError(self.path, "audio frame carries no timestamp")
                    if cursor is None and begin > lo and seek_to not in (None, restart):
                        break                                        # the seek landed after the window
                    count = frame.samples
                    if buf is None:
                        buf = Buffer(frame, hi - lo)
                    cursor = begin + count
                    a = begin if begin > lo else lo
                    b = cursor if cursor < hi else hi
                    if b > a:
                        buf.put(frame, count, a - lo, b - lo, a - begin)
                        if b > filled_to:
                            filled_to = b
                    if cursor >= hi:
                        reached_end = False
                        break
                if cursor is not None or seek_to in (None, restart):
                    break
                log.debug("%s: audio seek landed after %.3f s; decoding from the stream start", self.path, first)
                seek_to = restart
        if buf is None:
            return np.zeros(0, np.float32), rate, lo, reached_end
        return buf.mono(filled_to - lo), rate, lo, reached_end


@contextlib.contextmanager
def _only(container, stream):
    """Let the demuxer skip the packets of every other stream (MP4/MOV then does not even read them)."""
    others = [s for s in container.streams if s.index != stream.index]
    saved = [s.discard for s in others]
    for s in others:
        s.discard = Discard.all
    try:
        yield
    finally:
        for s, d in zip(others, saved):
            s.discard = d


def read_audio(path, start: float, end: float, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples of [start, end) seconds of the file at `path`, at `sample_rate`, decoded from
    the stream start (see `AudioWindows.read`)."""
    _check_span(start, end)
    with open_input(path) as container:
        return AudioWindows(container, path).read(start, end, sample_rate)
