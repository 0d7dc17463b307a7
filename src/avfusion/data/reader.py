"""One open media file serving a sample: its duration, frames and an audio window, from a single open.

`avfusion.video.read_frame` / `read_audio` open the file once per call and probe it; a training sample
needs the duration, a frame and an audio window, so reading them through one `ClipReader` saves two
opens and a decode. Frames equal `read_frames`' (exact mode uses its decoding cursor; keyframe mode
decodes the one keyframe packet). The audio window follows `read_audio` (margins, resampling,
padding, truncation checks) but, in indexed containers (MP4/MOV, Matroska/WebM), seeks to the window
instead of decoding from the file start; AAC bands coded as noise (perceptual noise substitution) are
regenerated from the decoder's running random state, so there the samples differ from a decode from
the start (same spectrum), identically on every read. MP4/MOV files are opened without FFmpeg's stream
analysis when their header is complete. Decoding is single-threaded: a data worker is one core. While
an audio window is demuxed the other streams' packets are skipped, and float audio frames are summed
over channels straight from their planes (PyAV's per-frame `to_ndarray` costs about what decoding does).
"""
from __future__ import annotations

import contextlib
import math
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from av.stream import Discard

from avfusion.audio import pad_or_repeat, resample
from avfusion.errors import DecodeError
from avfusion.media_audio import frame_to_mono
from avfusion.media_container import (container_start, declared_end, file_duration, frame_rotation,
                                      has_picture, open_input, seconds_to_pts, video_streams)
from avfusion.video import FrameCursor, frame_at, to_rgb  # the public decoding machinery of avfusion.video

__all__ = ["ClipReader", "open_clip", "read_image", "read_mask"]

_MODES = ("exact", "keyframe")
_MARGIN = 0.05            # seconds decoded beyond each end of an audio window (resampling context)
_TRUNCATION_SLACK = 0.5   # as avfusion.media_audio
_PRE_ROLL = 0.15          # at least this many seconds, and two codec frames, decoded before a seek target
_INDEXED_FORMATS = ("mov", "mp4", "matroska", "webm")
_MP4_SUFFIXES = (".mp4", ".m4v", ".m4a", ".mov")
_FAST_OPEN = {"skip_frame": "all", "threads": "1"}                  # for the analysis only
_NO_ANALYSIS = {"probesize": "32", "max_analyze_duration": "1", "fpsprobesize": "0"}


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
        self._moved = False                          # demuxer left its initial position

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
        """(N, H, W, 3) uint8 frames shown at `times` (see `avfusion.video.read_frames`)."""
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if not self.has_video:
            raise DecodeError(self.path, "no video stream")
        times = [float(t) for t in times]
        for t in times:
            if not 0.0 <= t <= self.duration:
                raise DecodeError(self.path, f"time {t:.3f} s outside the file (0 .. {self.duration:.3f} s)")
        self._moved = True
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
        """Mono float32 samples of [start, end) at `sample_rate`, as `avfusion.video.read_audio` returns."""
        if not end > start:
            raise ValueError(f"end ({end}) must be after start ({start})")
        if not self.has_audio:
            raise DecodeError(self.path, "no audio stream")
        num = int(round((end - start) * sample_rate))
        stream = self.container.streams.audio[0]
        stream_end = declared_end(self.container, stream)
        if start < 0 or start >= self.duration:
            raise DecodeError(self.path, f"start {start:.3f} s outside the file (0 .. {self.duration:.3f} s)")
        samples, rate, lo, reached_end = self._decode_audio(stream, max(0.0, start - _MARGIN), end + _MARGIN)
        audio_end = (lo + samples.shape[0]) / rate
        if reached_end and audio_end <= start:
            raise DecodeError(self.path, f"audio stream holds no samples at or after {start:.3f} s "
                                         "(empty or truncated stream)")
        if reached_end and audio_end < min(end, stream_end) - _TRUNCATION_SLACK:
            raise DecodeError(self.path, f"audio stops at {audio_end:.3f} s but the stream declares "
                                         f"{stream_end:.3f} s (truncated file?)")
        out = resample(samples, rate, sample_rate)
        offset = int(round((start - lo / rate) * sample_rate))
        out = out[offset:offset + num]
        if out.shape[0] < num:
            out = pad_or_repeat(torch.from_numpy(np.ascontiguousarray(out)), num).numpy()
        return np.ascontiguousarray(out, dtype=np.float32)

    def _seek_target(self, stream, first: float) -> int | None:
        """Timestamp to seek to before decoding from `first` s; None: decode on from where the demuxer is.

        Indexed containers seek a pre-roll early, so that the frame decoded without its predecessor
        (and a codec's priming packet at the start) lies before the window; others restart from the
        beginning once the demuxer has moved, which is what `read_audio` decodes.
        """
        indexed = any(n in self.container.format.name.split(",") for n in _INDEXED_FORMATS)
        if indexed:
            rate = stream.codec_context.sample_rate or stream.rate or 1
            pre_roll = max(_PRE_ROLL, 2.0 * (stream.codec_context.frame_size or 0) / rate)
            return seconds_to_pts(first - pre_roll, stream, container_start(self.container))
        return self._from_start(stream) if self._moved else None

    def _from_start(self, stream) -> int:
        """A timestamp before every packet of `stream`."""
        return (stream.start_time or 0) - int(1 / stream.time_base) - 1

    def _decode_audio(self, stream, first: float, last: float) -> tuple[np.ndarray, int, int, bool]:
        """Native-rate mono samples over [first, last) placed by timestamp (as media_audio._decode_window).

        Float frames (what AAC, Opus and Vorbis decode to) are summed over channels straight from
        their planes and divided once at the end (`_Buffer`), which gives the same values as per-frame
        `frame_to_mono` at a fraction of the cost (PyAV's `to_ndarray` costs about as much per frame as
        decoding it).
        """
        rate = stream.codec_context.sample_rate or stream.rate
        place = _Placer(stream.time_base, rate, container_start(self.container))
        lo, hi = math.floor(first * rate), math.ceil(last * rate)
        seek_to = self._seek_target(stream, first)
        start_pts = self._from_start(stream)
        self._cursor = None                          # the demuxer moves under any frame cursor
        with _only(self.container, stream):
            return self._decode_window(stream, rate, place, lo, hi, seek_to, start_pts)

    def _decode_window(self, stream, rate: int, place: _Placer, lo: int, hi: int, seek_to: int | None,
                       start_pts: int) -> tuple[np.ndarray, int, int, bool]:
        for _attempt in range(2):
            if seek_to is not None:
                self.container.seek(seek_to, stream=stream, backward=True)
            self._moved = True
            buf, filled_to, cursor, reached_end, overshot = None, lo, None, True, False
            for frame in self.container.decode(stream):
                pts = frame.pts
                if pts is not None:
                    begin = pts - place.shift if place.direct else place(pts)
                elif cursor is not None:
                    begin = cursor
                else:
                    raise DecodeError(self.path, "audio frame carries no timestamp")
                if cursor is None and begin > lo and seek_to not in (None, start_pts):
                    overshot = True                         # the seek landed after the window: retry
                    break
                count = frame.samples
                if buf is None:
                    buf = _Buffer(frame, hi - lo)
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
            if not overshot:
                break
            seek_to = start_pts
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


class _Placer:
    """Timestamp (in `time_base` units) -> sample index on the file timeline:
    round(pts * time_base * rate - origin * rate), half to even as Fraction rounds; integer-only when
    origin * rate is whole (the usual case), with the conversion factors taken once per window."""

    def __init__(self, time_base: Fraction, rate: int, origin: Fraction):
        self.num, self.den = time_base.numerator * rate, time_base.denominator
        shift = Fraction(origin) * rate
        self.shift = int(shift) if shift.denominator == 1 else shift
        self.direct = self.num == self.den and isinstance(self.shift, int)   # time base 1/rate: pts - shift

    def __call__(self, pts: int) -> int:
        if not isinstance(self.shift, int):
            return round(Fraction(pts * self.num, self.den) - self.shift)
        q, r = divmod(pts * self.num, self.den)
        q -= self.shift
        if 2 * r > self.den or (2 * r == self.den and q % 2):
            q += 1
        return q


_FLOAT_FORMATS = {"fltp": np.float32, "dblp": np.float64, "flt": np.float32, "dbl": np.float64}


class _Buffer:
    """The channel sum of a window's decoded samples, filled frame by frame straight from the frames'
    planes, divided by the channel count at the end: for float frames (what AAC, Opus and Vorbis decode
    to) the same arithmetic, in the decoder's float type, as numpy's mean over channels (`frame_to_mono`),
    without PyAV's costly `to_ndarray` or a (channels, samples) copy. Other sample formats, and frames
    whose format or layout differs from the window's first, go through `frame_to_mono`."""

    def __init__(self, frame, length: int):
        self.format = frame.format.name
        self.dtype = _FLOAT_FORMATS.get(self.format)
        self.planar = frame.format.is_planar
        self.channels = frame.layout.nb_channels if self.dtype is not None else 1
        self.data = np.empty(length, self.dtype or np.float32)
        self.end = 0                                                  # data[:end] is written or zeroed

    def put(self, frame, count: int, a: int, b: int, skip: int) -> None:
        """Samples skip .. skip + (b - a) of `frame` (which holds `count`) into positions a .. b."""
        if a > self.end:
            self.data[self.end:a] = 0                                 # a gap between frames is silence
        if b > self.end:
            self.end = b
        out, end = self.data[a:b], skip + b - a
        if self.dtype is None or frame.format.name != self.format or frame.layout.nb_channels != self.channels:
            out[:] = frame_to_mono(frame)[skip:end] * self.channels     # summed like the other frames
        elif self.planar:
            planes, dtype = frame.planes, self.dtype
            if self.channels == 2:                                    # the common case, in one step
                np.add(np.frombuffer(planes[0], dtype, count)[skip:end],
                       np.frombuffer(planes[1], dtype, count)[skip:end], out=out)
            else:
                self._sum([np.frombuffer(plane, dtype, count)[skip:end] for plane in planes], out)
        else:
            packed = np.frombuffer(frame.planes[0], self.dtype, count * self.channels)
            self._sum(list(packed.reshape(count, self.channels)[skip:end].T), out)

    @staticmethod
    def _sum(rows: list, out: np.ndarray) -> None:
        """out = rows[0] + rows[1] + ..., added in channel order as numpy's mean over channels adds."""
        if len(rows) == 1:
            out[:] = rows[0]
            return
        np.add(rows[0], rows[1], out=out)
        for row in rows[2:]:
            out += row

    def mono(self, filled: int) -> np.ndarray:
        """The mean over channels of positions 0 .. filled, float32 (the buffer is used up)."""
        data = self.data[:filled]
        if filled > self.end:
            data[self.end:] = 0
        if self.channels > 1:
            data /= self.channels
        return data.astype(np.float32, copy=False)


def _complete(container) -> bool:
    """Every stream has the parameters decoding needs."""
    video = all(v.width and v.height for v in video_streams(container))
    audio = all((a.codec_context.sample_rate or a.rate) and a.codec_context.channels for a in container.streams.audio)
    return bool(container.streams) and video and audio


@contextlib.contextmanager
def _open(path) -> Iterator:
    """`media_container.open_input`, skipping FFmpeg's stream analysis for MP4/MOV files, whose header
    already holds every parameter (a 10x faster open); other files, or an incomplete header, get the
    full analysis."""
    path = Path(path)
    if path.suffix.lower() in _MP4_SUFFIXES and path.is_file():
        with open_input(path, options=_FAST_OPEN, container_options=_NO_ANALYSIS) as container:
            if _complete(container):
                yield container
                return
    with open_input(path) as container:
        yield container


@contextlib.contextmanager
def open_clip(path) -> Iterator[ClipReader]:
    """A `ClipReader` on `path`; PyAV failures inside the block become `DecodeError`."""
    with _open(path) as container:
        yield ClipReader(container, path)


def _first_frame(path, convert):
    """`convert(frame)` of an image file's first frame, decoded without seeking: seeking an image2 input
    leaves FFmpeg's demuxer nothing to read for JPEGs as ffmpeg, PIL or OpenCV write them (the
    Flickr-SoundNet, VGG-SS and AVSBench frames)."""
    with open_input(path) as container:
        if not container.streams.video:
            raise DecodeError(path, "no image in the file")
        frame = next(container.decode(container.streams.video[0]), None)
        if frame is None:
            raise DecodeError(path, "image holds no decodable frame")
        return convert(frame)


def read_image(path) -> np.ndarray:
    """A still image (jpg, png, ...) as (H, W, 3) uint8 RGB."""
    return _first_frame(path, lambda frame: frame.to_ndarray(format="rgb24"))


def read_mask(path) -> np.ndarray:
    """A mask image as (H, W) int64 of its stored values: palette indices, grey levels (e.g. 0/255 or
    class indices), or one channel of an RGB image whose channels are equal. Colour masks are refused."""
    return _first_frame(path, lambda frame: _mask_values(path, frame))


def _mask_values(path, frame) -> np.ndarray:
    name = frame.format.name
    if name == "pal8" or name.startswith("gray"):
        arr = frame.to_ndarray()
        arr = arr[0] if isinstance(arr, tuple) else arr           # pal8: (indices, palette)
    else:
        rgb = frame.to_ndarray(format="rgb24")
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise DecodeError(path, f"colour mask ({name}); give palette or grey-level masks "
                                    "(e.g. AVSBench labels_semantic, not labels_rgb)")
        arr = rgb[..., 0]
    return np.ascontiguousarray(arr).astype(np.int64)
