"""Reading a mono audio window from any PyAV-readable file (video containers and audio-only files)."""
from __future__ import annotations

import logging
import math
from fractions import Fraction
from typing import Any, Iterator

import numpy as np
import torch

from .audio import pad_or_repeat, resample
from .errors import DecodeError
from .media_container import container_start, declared_end, file_duration, open_input, seconds_to_pts

log = logging.getLogger(__name__)

__all__ = ["read_audio", "frame_to_mono", "audio_frames"]

# Windows starting within this many seconds are decoded from the stream start without seeking:
# exact for every format (seeking in MP3 without an index lands on estimated timestamps, off by
# up to ~60 ms in FFmpeg), and cheap for clips of this length. Later windows seek (approximate for MP3).
SEEK_AFTER = 60.0
_TRUNCATION_SLACK = 0.5  # seconds an audio stream may fall short of its declared end before it counts
                         # as truncated (encoders and muxers round stream ends)
_MARGIN = 0.05            # seconds decoded beyond each end of the window, as resampling context
_INT_SCALE = {np.dtype(np.int16): 32768.0,
              np.dtype(np.int32): 2147483648.0, np.dtype(np.int64): 9223372036854775808.0}


def frame_to_mono(frame) -> np.ndarray:
    """AudioFrame (any sample format, any layout) -> (samples,) float32 in [-1, 1], mean of channels."""
    arr = frame.to_ndarray()
    if not frame.format.is_planar:
        arr = arr.reshape(-1, frame.layout.nb_channels).T                # (1, S*C) interleaved -> (C, S)
    if arr.dtype == np.uint8:
        arr = (arr.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float64) / _INT_SCALE[arr.dtype]
    return arr.mean(axis=0).astype(np.float32)


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


def _decode_window(container, path, first: float, last: float) -> tuple[np.ndarray, int, int, bool]:
    """Native-rate mono samples covering [first, last) seconds.

    Returns (samples, native_rate, index of samples[0] on the file timeline, reached_end). Frames are
    placed by their timestamps: gaps and a late stream start stay silent.
    """
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or stream.rate
    origin = container_start(container)
    lo, hi = math.floor(first * rate), math.ceil(last * rate)
    buf = np.zeros(hi - lo, np.float32)
    filled_to = lo                                                       # absolute sample index
    stream_start = stream.start_time or 0
    seek_to = max(seconds_to_pts(first, stream, origin), stream_start) if first > SEEK_AFTER else None
    for _attempt in range(2):
        if seek_to is not None:
            container.seek(seek_to, stream=stream, backward=True)
        cursor = None
        reached_end = True
        for frame, start in audio_frames(container, path):
            if cursor is None and start > lo and seek_to is not None and seek_to > stream_start:
                break                                                    # seek overshot: retry
            samples = frame_to_mono(frame)
            cursor = start + samples.shape[0]
            a, b = max(start, lo), min(cursor, hi)
            if b > a:
                buf[a - lo:b - lo] = samples[a - start:b - start]
                filled_to = max(filled_to, b)
            if cursor >= hi:
                reached_end = False
                break
        if cursor is not None or seek_to is None or seek_to == stream_start:
            break
        log.debug("%s: audio seek landed after %.3f s; decoding from the stream start", path, first)
        seek_to = stream_start
    return buf[:filled_to - lo], rate, lo, reached_end


def read_audio(path, start: float, end: float, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples of [start, end) seconds at `sample_rate`: exactly round((end-start)*rate).

    Channels are averaged; the native rate is converted with `avfusion.audio.resample`. Silence
    fills the time before a late-starting audio stream. When the audio ends before `end` (a file
    shorter than asked), the available part is extended with the official repeat rule
    (`avfusion.audio.pad_or_repeat`). Audio that stops more than 0.5 s before the stream's declared
    end is a truncated file: DecodeError.
    """
    if not end > start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    num = int(round((end - start) * sample_rate))
    with open_input(path) as container:
        if not container.streams.audio:
            raise DecodeError(path, "no audio stream")
        duration = file_duration(container)
        stream_end = declared_end(container, container.streams.audio[0])
        if start < 0 or start >= duration:
            raise DecodeError(path, f"start {start:.3f} s outside the file (0 .. {duration:.3f} s)")
        first = max(0.0, start - _MARGIN)
        samples, rate, lo, reached_end = _decode_window(container, path, first, end + _MARGIN)
    audio_end = (lo + samples.shape[0]) / rate
    if reached_end and audio_end <= start:
        raise DecodeError(path, f"audio stream holds no samples at or after {start:.3f} s "
                                "(empty or truncated stream)")
    if reached_end and audio_end < min(end, stream_end) - _TRUNCATION_SLACK:
        raise DecodeError(path, f"audio stops at {audio_end:.3f} s but the stream declares "
                                f"{stream_end:.3f} s (truncated file?)")
    out = resample(samples, rate, sample_rate)
    offset = int(round((start - lo / rate) * sample_rate))              # window start in `out`
    out = out[offset:offset + num]
    if out.shape[0] < num:
        log.debug("%s: audio ends before %.3f s; repeat-padding %d samples", path, end, num - out.shape[0])
        out = pad_or_repeat(torch.from_numpy(np.ascontiguousarray(out)), num).numpy()
    return np.ascontiguousarray(out, dtype=np.float32)

