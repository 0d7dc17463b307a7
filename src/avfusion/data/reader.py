"""One open media file serving a sample: its duration, frames and an audio window, from a single open.

`avfusion.video.read_frame` / `read_audio` open the file once per call and probe it; a training sample
needs the duration, a frame and an audio window, so reading them through one `ClipReader` saves two
opens and a decode. Frames equal `read_frames`' (exact mode uses its decoding cursor; keyframe mode
decodes the one keyframe packet). The audio window follows `read_audio` (margins, resampling,
padding, truncation checks) but, in indexed containers (MP4/MOV, Matroska/WebM), seeks to the window
instead of decoding from the file start; AAC bands coded as noise (perceptual noise substitution) are
regenerated from the decoder's running random state, so there the samples differ from a decode from
the start (same spectrum), identically on every read. MP4/MOV files are opened without FFmpeg's stream
analysis when their header is complete. Decoding is single-threaded: a data worker is one core.
"""
from __future__ import annotations

import contextlib
import math
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
import torch

from avfusion.audio import pad_or_repeat
from avfusion.errors import DecodeError
from avfusion.media_audio import frame_to_mono
from avfusion.media_container import (container_start, declared_end, file_duration, frame_rotation,
                                      open_input, seconds_to_pts)
from avfusion.video import _Cursor, _frame_at, _to_rgb  # the exact-decoding machinery, shared on purpose

__all__ = ["ClipReader", "open_clip", "read_image", "read_mask", "resample"]

_MODES = ("exact", "keyframe")
_MARGIN = 0.05            # seconds decoded beyond each end of an audio window (resampling context)
_TRUNCATION_SLACK = 0.5   # as avfusion.media_audio
_PRE_ROLL = 0.15          # at least this many seconds, and two codec frames, decoded before a seek target
_INDEXED_FORMATS = ("mov", "mp4", "matroska", "webm")
_MP4_SUFFIXES = (".mp4", ".m4v", ".m4a", ".mov")
_FAST_OPEN = {"skip_frame": "all", "threads": "1"}                  # for the analysis only
_NO_ANALYSIS = {"probesize": "32", "max_analyze_duration": "1", "fpsprobesize": "0"}


@lru_cache(maxsize=16)
def _lowpass(up: int, down: int) -> np.ndarray:
    from scipy.signal import firwin
    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """`avfusion.audio.resample` for float numpy arrays, bit for bit, with the filter designed once."""
    if orig_rate == new_rate:
        return x
    from scipy.signal import resample_poly
    ratio = Fraction(int(new_rate), int(orig_rate))
    h = _lowpass(ratio.numerator, ratio.denominator).astype(x.dtype)
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=-1, window=h).astype(x.dtype, copy=False)


class ClipReader:
    """Duration, frames and audio windows of one open file (use `open_clip`)."""

    def __init__(self, container, path):
        self.container, self.path = container, path
        self.duration = file_duration(container)
        self.has_video = bool(container.streams.video)
        self.has_audio = bool(container.streams.audio)
        self._cursor: _Cursor | None = None
        self._configured = False
        self._moved = False                          # demuxer left its initial position

    def _video_stream(self):
        stream = self.container.streams.video[0]
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
                    self._cursor = _Cursor(self.container, self.path)
                frame = _frame_at(self._cursor, times[i], mode)
            out[i] = _to_rgb(frame, frame_rotation(frame))
        return np.stack(out)

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

        Float frames (what AAC, Opus and Vorbis decode to) are copied whole and averaged over channels
        once at the end, which gives the same values as per-frame `frame_to_mono` at a fraction of the cost.
        """
        rate = stream.codec_context.sample_rate or stream.rate
        tb = stream.time_base
        shift = container_start(self.container) * rate                  # Fraction, samples
        lo, hi = math.floor(first * rate), math.ceil(last * rate)
        seek_to = self._seek_target(stream, first)
        start_pts = self._from_start(stream)
        for _attempt in range(2):
            if seek_to is not None:
                self.container.seek(seek_to, stream=stream, backward=True)
            self._moved = True
            buf, filled_to, cursor, reached_end, overshot = None, lo, None, True, False
            for frame in self.container.decode(stream):
                if frame.pts is not None:
                    begin = _round_div(frame.pts * tb.numerator * rate, tb.denominator, shift)
                elif cursor is not None:
                    begin = cursor
                else:
                    raise DecodeError(self.path, "audio frame carries no timestamp")
                if cursor is None and begin > lo and seek_to not in (None, start_pts):
                    overshot = True                         # the seek landed after the window: retry
                    break
                samples = _channels(frame)                  # (C, S) float, or (1, S) mono
                if buf is None:
                    buf = np.zeros((samples.shape[0], hi - lo), samples.dtype)
                cursor = begin + samples.shape[1]
                a, b = max(begin, lo), min(cursor, hi)
                if b > a:
                    buf[:, a - lo:b - lo] = samples[:, a - begin:b - begin]
                    filled_to = max(filled_to, b)
                if cursor >= hi:
                    reached_end = False
                    break
            if not overshot:
                break
            seek_to = start_pts
        if buf is None:
            return np.zeros(0, np.float32), rate, lo, reached_end
        return buf[:, :filled_to - lo].mean(axis=0).astype(np.float32), rate, lo, reached_end


def _round_div(num: int, den: int, shift: Fraction) -> int:
    """round(num / den - shift) (half to even, as Fraction rounds), integer-only when shift is whole."""
    if shift.denominator != 1:
        return round(Fraction(num, den) - shift)
    q, r = divmod(num, den)
    q -= int(shift)
    if 2 * r > den or (2 * r == den and q % 2):
        q += 1
    return q


def _channels(frame) -> np.ndarray:
    """(C, S) samples of a float audio frame as decoded; other formats as (1, S) mono via frame_to_mono."""
    name = frame.format.name
    if name in ("fltp", "dblp"):
        return frame.to_ndarray()
    if name in ("flt", "dbl"):
        return frame.to_ndarray().reshape(-1, frame.layout.nb_channels).T
    return frame_to_mono(frame)[None]


def _complete(container) -> bool:
    """Every stream has the parameters decoding needs."""
    video = all(v.width and v.height for v in container.streams.video)
    audio = all((a.codec_context.sample_rate or a.rate) and a.codec_context.channels for a in container.streams.audio)
    return bool(container.streams) and video and audio


@contextlib.contextmanager
def _open(path) -> Iterator:
    """`media_container.open_input`, skipping FFmpeg's stream analysis for MP4/MOV files, whose header
    already holds every parameter (a 10x faster open); other files, or an incomplete header, get the
    full analysis."""
    path = Path(path)
    if path.suffix.lower() not in _MP4_SUFFIXES or not path.is_file():
        with open_input(path) as container:
            yield container
        return
    try:
        container = av.open(str(path), mode="r", options=_FAST_OPEN, container_options=_NO_ANALYSIS)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DecodeError(path, f"cannot open container (damaged or not a media file): {exc}") from exc
    if not _complete(container):
        container.close()
        with open_input(path) as container:
            yield container
        return
    try:
        yield container
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise DecodeError(path, f"decoding failed (damaged or truncated file?): {exc}") from exc
    finally:
        container.close()


@contextlib.contextmanager
def open_clip(path) -> Iterator[ClipReader]:
    """A `ClipReader` on `path`; PyAV failures inside the block become `DecodeError`."""
    with _open(path) as container:
        yield ClipReader(container, path)


def read_image(path) -> np.ndarray:
    """A still image (jpg, png, ...) as (H, W, 3) uint8 RGB."""
    with open_clip(path) as clip:
        return clip.frames([0.0])[0]


def read_mask(path) -> np.ndarray:
    """A mask image as (H, W) int64 of its stored values: palette indices, grey levels (e.g. 0/255 or
    class indices), or one channel of an RGB image whose channels are equal. Colour masks are refused."""
    with open_input(path) as container:
        if not container.streams.video:
            raise DecodeError(path, "no image in the file")
        frame = next(container.decode(container.streams.video[0]), None)
        if frame is None:
            raise DecodeError(path, "mask image holds no decodable frame")
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
