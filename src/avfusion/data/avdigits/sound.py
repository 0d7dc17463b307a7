"""Audio of a scene: one spoken digit at a random offset in a 1 s window, plus white or pink noise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from avfusion.data.avdigits.sources import NUM_SAMPLES
from avfusion.errors import DataError

PEAK_RANGE = (0.3, 0.5)  # the speech is scaled to a random peak amplitude in this range
SNR_RANGE_DB = (10.0, 30.0)
NOISE_KINDS = ("white", "pink")
# Pink (1/f) noise: J. O. Smith's 3-pole/3-zero approximation, within 0.3 dB from 9 Hz to Nyquist.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786], dtype=np.float32)
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400], dtype=np.float32)
_PINK_WARMUP = 2048  # samples dropped while the filter state settles


@dataclass(frozen=True)
class Sound:
    """A scene's waveform with its provenance."""

    audio: np.ndarray  # (16000,) float32, speech + noise
    offset: int  # first sample of the speech in the window
    snr_db: float  # 10 log10(sum speech^2 / sum noise^2) over the 1 s window
    noise: str  # one of NOISE_KINDS


def noise(rng: np.random.Generator, kind: str, n: int = NUM_SAMPLES) -> np.ndarray:
    """(n,) float32 noise of exactly unit mean power: white (uniform samples) or pink (filtered white).

    White noise is uniformly distributed (3x cheaper to draw than Gaussian, equally flat spectrum);
    pink noise, a long filter's sum of those samples, is close to Gaussian.
    """
    if kind == "white":
        x = rng.random(n, dtype=np.float32) - np.float32(0.5)
    elif kind == "pink":
        white = rng.random(n + _PINK_WARMUP, dtype=np.float32) - np.float32(0.5)
        x = lfilter(_PINK_B, _PINK_A, white)[_PINK_WARMUP:]  # float32 throughout
    else:
        raise DataError(f"noise kind {kind!r} is not one of {NOISE_KINDS}")
    return x / np.sqrt(np.mean(np.square(x, dtype=np.float64))).astype(np.float32)


def place(rng: np.random.Generator, recording: np.ndarray) -> tuple[np.ndarray, int]:
    """Scale a recording to a random peak and put it at a random offset in a silent 1 s window."""
    peak = rng.uniform(*PEAK_RANGE)
    offset = int(rng.integers(0, NUM_SAMPLES - recording.size + 1))
    speech = np.zeros(NUM_SAMPLES, dtype=np.float32)
    speech[offset:offset + recording.size] = recording * np.float32(peak / np.abs(recording).max())
    return speech, offset


def add_noise(rng: np.random.Generator, speech: np.ndarray, snr_db: float, kind: str) -> np.ndarray:
    """speech + noise scaled so that the window's speech-to-noise power ratio is ``snr_db``."""
    power = np.mean(np.square(speech, dtype=np.float64))
    scale = np.float32(np.sqrt(power / 10.0 ** (snr_db / 10.0)))
    return speech + scale * noise(rng, kind, speech.size)


def make_sound(rng: np.random.Generator, recording: np.ndarray) -> Sound:
    """Draw offset, gain, SNR and noise kind, and build the noisy 1 s waveform."""
    speech, offset = place(rng, recording)
    snr_db = float(rng.uniform(*SNR_RANGE_DB))
    kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    return Sound(add_noise(rng, speech, snr_db, kind), offset, snr_db, kind)
