"""Windows over a media input and the media they need, decoded once.

`plan_windows` cuts [0, duration] into windows of the model's audio length; each window's image is
the frame shown at its centre. `open_media` opens a file (or wraps arrays) once: the audio is
decoded in one forward pass (in chunks, mono, at the model's rate) and kept; frames are read at the
window centres batch by batch, also in one forward pass over the file. Audio a window needs past the
end of the input is extended with the training rule (`avfusion.audio.pad_or_repeat`); time where the
file has pictures but its audio stream has ended (or not begun) is silent.
"""
from __future__ import annotations

import abc
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from avfusion.data.item_media import fit_length
from avfusion.data.sampling import Window
from avfusion.errors import ConfigError, DataError, DecodeError
from avfusion.media import open_clip
from avfusion.media.container import declared_end, video_streams

log = logging.getLogger(__name__)

__all__ = ["Window", "plan_windows", "Media", "open_media", "ArraysMedia", "FileMedia"]

CHUNK_SECONDS = 300      # audio is decoded in chunks of this length (bounded memory at the native rate)
_EPS = 1e-6
TAIL_FRACTION = 0.1      # an uncovered tail shorter than this part of a window gets no window of its own


def plan_windows(duration: float, window: float, stride: float | None = None) -> list[Window]:
    """Windows of `window` s starting every `stride` s (default: `window`, no overlap) over [0, duration].

    When the regular windows leave more than a tenth of a window uncovered at the end, one more ends
    exactly at `duration` (overlapping its predecessor more); a shorter tail (rounding of container
    durations) is left out. An input shorter than one window gets the single window [0, window), its
    frame at duration / 2, its audio padded as in training.
    """
    if not window > 0:
        raise ConfigError(f"--window must be positive, got {window}")
    stride = window if stride is None else float(stride)
    if not stride > 0:
        raise ConfigError(f"--stride must be positive, got {stride}")
    if not duration > 0:
        raise DataError(f"the input lasts {duration} s: nothing to analyse")
    if duration <= window * (1.0 + TAIL_FRACTION):
        return [Window(0.0, float(window), min(duration, window) / 2.0)]
    last = duration - window
    starts = list(np.arange(0.0, last + _EPS, stride))
    if last - starts[-1] > TAIL_FRACTION * window:
        starts.append(last)
    return [Window(float(s), float(s) + window, float(s) + window / 2.0) for s in starts]


@dataclass
class MediaFacts:
    """What inference reports about its input."""

    name: str                 # the path, or "<arrays>"
    duration: float           # seconds
    width: int                # displayed frame size (after rotation)
    height: int
    fps: float | None
    has_audio: bool


class Media(abc.ABC):
    """An opened input: facts, the whole mono waveform, and frames at given times."""

    facts: MediaFacts
    sample_rate: int
    waveform: np.ndarray | None     # (round(duration * rate),) float32, None without audio

    @abc.abstractmethod
    def frames(self, times: Sequence[float]) -> np.ndarray:
        """(N, H, W, 3) uint8 frames shown at `times` (sorted ascending across calls for one pass)."""

    def window_audio(self, windows: Sequence[Window]) -> np.ndarray:
        """(N, samples) float32: each window's audio, repeat-padded past the end of the input."""
        if self.waveform is None:
            raise DecodeError(self.facts.name, "no audio stream")
        rate, wave = self.sample_rate, self.waveform
        num = int(round((windows[0].end - windows[0].start) * rate))
        out = np.empty((len(windows), num), np.float32)
        for j, w in enumerate(windows):
            a = min(int(round(w.start * rate)), max(0, wave.shape[0] - 1))
            piece = wave[a:a + num]
            out[j] = fit_length(piece if piece.size else wave[-1:], num)
        return out


class FileMedia(Media):
    """A media file read through one `avfusion.media.ClipReader`."""

    def __init__(self, clip, path, sample_rate: int):
        self.clip, self.sample_rate = clip, int(sample_rate)
        if not clip.has_video:
            what = ("an audio file with a still picture (cover art) and no video" if clip.has_picture
                    else "no video stream")
            raise DecodeError(path, f"{what}: give a video file (inference needs moving pictures and sound)")
        stream = video_streams(clip.container)[0]
        rate = stream.average_rate or stream.guessed_rate
        if not clip.duration > 0:
            raise DecodeError(path, "the file declares no duration (empty or damaged?)")
        self.facts = MediaFacts(str(path), float(clip.duration), 0, 0, float(rate) if rate else None,
                                clip.has_audio)
        # Audio first: a ClipReader's frame cursor does not survive an audio decode on the same file.
        self.waveform = self._decode_audio(path) if clip.has_audio else None
        first = clip.frames([0.0])[0]                    # the displayed size (rotation applied)
        self.facts.height, self.facts.width = first.shape[:2]

    def _decode_audio(self, path) -> np.ndarray:
        """The whole file's audio, mono at `sample_rate`, silent where the audio stream has no samples."""
        rate, duration = self.sample_rate, self.facts.duration
        stream = self.clip.container.streams.audio[0]
        end = min(duration, declared_end(self.clip.container, stream))
        pieces, t = [], 0.0
        while end - t > 1.0 / rate:
            b = min(end, t + CHUNK_SECONDS)
            pieces.append(self.clip.audio(t, b, rate))
            t = b
        if not pieces:
            raise DecodeError(path, "the audio stream holds no samples")
        wave = np.concatenate(pieces)
        total = int(round(duration * rate))
        if wave.shape[0] < total:                     # the audio stream ends before the pictures
            gap = (total - wave.shape[0]) / rate
            log.log(logging.INFO if gap > 0.5 else logging.DEBUG, "%s: audio ends at %.2f s of %.2f s; the rest "
                    "is silent", path, wave.shape[0] / rate, duration)
            wave = np.concatenate([wave, np.zeros(total - wave.shape[0], np.float32)])
        return wave[:total]

    def frames(self, times: Sequence[float]) -> np.ndarray:
        top = self.facts.duration
        return self.clip.frames([min(max(0.0, float(t)), top) for t in times])


class ArraysMedia(Media):
    """Frames and a waveform given as arrays.

    frames: (H, W, 3) uint8 (one picture for the whole clip) or (N, H, W, 3) frames spread evenly over
    the audio; audio: (samples,) or (channels, samples) float at `audio_rate` (channels averaged).
    """

    def __init__(self, frames: np.ndarray, audio: np.ndarray | None, audio_rate: int | None, sample_rate: int):
        from avfusion.audio import resample

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise DataError(f"frames must be uint8 (H, W, 3) or (N, H, W, 3), got {frames.dtype} {frames.shape}")
        self.sample_rate = int(sample_rate)
        self._frames = frames
        if audio is None:
            self.waveform = None
            duration = float(len(frames))       # one second per frame, as a still-image slide show
        else:
            if not audio_rate:
                raise ConfigError("give the audio's sample rate with the waveform")
            wave = np.asarray(audio, dtype=np.float32)
            if wave.ndim == 2:
                wave = wave.mean(axis=0)
            if wave.ndim != 1 or wave.size == 0:
                raise DataError(f"audio must be (samples,) or (channels, samples), got shape {np.shape(audio)}")
            self.waveform = np.ascontiguousarray(resample(wave, int(audio_rate), self.sample_rate), np.float32)
            duration = self.waveform.shape[0] / self.sample_rate
        h, w = frames.shape[1:3]
        self.facts = MediaFacts("<arrays>", duration, w, h, len(frames) / duration, audio is not None)

    def frames(self, times: Sequence[float]) -> np.ndarray:
        n, d = len(self._frames), self.facts.duration
        idx = [min(n - 1, max(0, int(math.floor(float(t) / d * n)))) for t in times]
        return self._frames[idx]


@contextlib.contextmanager
def open_media(source, sample_rate: int) -> Iterator[Media]:
    """`source`: a path, or a tuple (frames, audio, audio_rate) / (frames, audio_rate=None) of arrays."""
    if isinstance(source, tuple):
        frames, audio, rate = (*source, None, None)[:3]
        yield ArraysMedia(frames, audio, rate, sample_rate)
        return
    with open_clip(source) as clip:
        yield FileMedia(clip, source, sample_rate)
