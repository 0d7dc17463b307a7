"""Decoded audio frames -> mono float samples: one frame at a time (`frame_to_mono`), or a window's frames
summed into one buffer (`Buffer`) at the sample indices their timestamps give (`Placer`)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = ["frame_to_mono", "Placer", "Buffer"]

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


class Placer:
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


class Buffer:
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
