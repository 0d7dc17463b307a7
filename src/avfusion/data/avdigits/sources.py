"""The two real sources of AV-Digits and their fixed train/test splits.

Audio: the Free Spoken Digit Dataset (FSDD) recordings shipped in ``fsdd/`` (CC BY-SA 4.0, see
``fsdd/ATTRIBUTION.md``); FSDD's own split, recordings 0-4 of every (digit, speaker) are test, 5-49
train. Images: the UCI handwritten digits bundled with scikit-learn; image ``i`` is test when
``i % 5 == 0``, train otherwise. Decoded data are cached once per process.
"""
from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import firwin, resample_poly

from avfusion.errors import DataError, DecodeError

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
SAMPLE_RATE = 16000
#: The class names of AV-Digits: class k is the digit k, spoken and written.
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUM_SAMPLES = SAMPLE_RATE  # one 1.0 s window
FSDD_RATE = 8000
FSDD_TEST_INDICES = range(0, 5)
IMAGE_TEST_MODULUS = 5

_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)$")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"unknown AV-Digits split {split!r}; use one of {SPLITS}")
    return split


@functools.lru_cache(maxsize=None)
def fsdd_dir() -> Path:
    """The directory of the shipped FSDD recordings."""
    return Path(__file__).resolve().parent / "fsdd"


@functools.lru_cache(maxsize=None)
def _fsdd_names() -> tuple[str, ...]:
    root = fsdd_dir()
    names = tuple(sorted(p.stem for p in root.glob("*.flac")))
    if not names:
        raise DataError(f"no FSDD recordings (*.flac) in {root}; the package data is missing, "
                        "reinstall avfusion or copy the recordings there")
    for name in names:
        if not _NAME.match(name):
            raise DataError(f"{root / (name + '.flac')}: not an FSDD name '<digit>_<speaker>_<index>'")
    return names


def parse_name(name: str) -> tuple[int, str, int]:
    """``'3_theo_12'`` -> ``(3, 'theo', 12)``."""
    m = _NAME.match(name)
    if m is None:
        raise DataError(f"{name!r} is not an FSDD recording name '<digit>_<speaker>_<index>'")
    return int(m["digit"]), m["speaker"], int(m["index"])


@functools.lru_cache(maxsize=None)
def audio_pool(split: str) -> tuple[tuple[str, ...], ...]:
    """Recording names of the split, one sorted tuple per digit 0-9."""
    want_test = check_split(split) == "test"
    pool: list[list[str]] = [[] for _ in range(10)]
    for name in _fsdd_names():
        digit, _, index = parse_name(name)
        if (index in FSDD_TEST_INDICES) == want_test:
            pool[digit].append(name)
    empty = [d for d in range(10) if not pool[d]]
    if empty:
        raise DataError(f"{fsdd_dir()}: no {split} recordings of digits {empty}")
    return tuple(tuple(names) for names in pool)


@functools.lru_cache(maxsize=None)
def _resampling_filter() -> np.ndarray:
    """The float32 FIR filter ``resample_poly(x, 2, 1)`` designs for float32 x, designed once, not per call."""
    up = SAMPLE_RATE // FSDD_RATE
    return firwin(2 * 10 * up + 1, 1.0 / up, window=("kaiser", 5.0)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def load_recording(name: str) -> np.ndarray:
    """One FSDD recording as float32 at 16 kHz, at most 1 s long (read-only, cached).

    Longer recordings (20 of 3,000, up to 2.3 s) keep the 1 s window of highest energy.
    """
    parse_name(name)
    path = fsdd_dir() / f"{name}.flac"
    try:
        x, rate = sf.read(path, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise DecodeError(path, f"cannot read FLAC ({e}); reinstall avfusion") from e
    if rate != FSDD_RATE or x.ndim != 1 or x.size == 0:
        raise DecodeError(path, f"expected mono {FSDD_RATE} Hz audio, got {rate} Hz, shape {x.shape}")
    x = resample_poly(x, SAMPLE_RATE // FSDD_RATE, 1, window=_resampling_filter()).astype(np.float32)
    if x.size > NUM_SAMPLES:
        energy = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
        start = int(np.argmax(energy[NUM_SAMPLES:] - energy[:-NUM_SAMPLES]))
        logger.debug("%s: %.2f s long, keeping the 1 s from %.2f s (highest energy)", path, x.size / SAMPLE_RATE,
                     start / SAMPLE_RATE)
        x = x[start:start + NUM_SAMPLES]
    if not np.any(x):
        raise DecodeError(path, "recording is silent")
    x.flags.writeable = False
    return x


@functools.lru_cache(maxsize=None)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The sklearn handwritten digits: images (1797, 8, 8) float32 in [0, 1], classes (1797,) int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (np.asarray(digits.images, dtype=np.float32) / 16.0)
    targets = np.asarray(digits.target, dtype=np.int64)
    images.flags.writeable = False
    targets.flags.writeable = False
    return images, targets


@functools.lru_cache(maxsize=None)
def image_pool(split: str) -> tuple[np.ndarray, ...]:
    """Indices into :func:`digit_images` of the split, one sorted array per digit 0-9."""
    want_test = check_split(split) == "test"
    _, targets = digit_images()
    index = np.arange(targets.size)
    in_split = (index % IMAGE_TEST_MODULUS == 0) == want_test
    return tuple(index[in_split & (targets == d)] for d in range(10))
