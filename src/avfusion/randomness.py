"""Per-sample random streams: the one table of every stream the package draws, and their generators.

Every random choice made for a sample (its window, its augmentation, its mixture partners, its
masking noise, a baseline's guess) comes from a generator that is a pure function of
(seed, epoch, sample index, stream), never from global state. A sample then gets the same
randomness whatever the batch it lands in, the number of workers or processes, or a resumption.

Two uses share a generator exactly when they share the stream number, so :class:`Stream` is the
only place stream numbers are given, and a test checks that no two uses (a mixture's sources
included) coincide. The streams live in their own entropy domain (``spawn_key``), apart from the
AV-Digits scene generator, which seeds from (seed, split, stream, index) with no spawn key.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch

__all__ = ["Stream", "seed_sequence", "numpy_rng", "torch_generator", "sample_noise", "source_stream"]

#: Marks the entropy of per-sample streams (SeedSequence.spawn_key), so that it never equals an entropy
#: built elsewhere from four integers (the AV-Digits scenes).
_DOMAIN = (0x5A3F,)


class Stream(IntEnum):
    """Every per-sample random stream of the package.

    Data streams (0-4) are drawn while a sample is read; a mixture's source k uses
    ``source_stream(stream, k)`` = stream + SOURCE * (k + 1). Task streams (5 and up, below SOURCE)
    are drawn in the training step or by an evaluation baseline. ORDER seeds the loader's
    permutation of an epoch (with sample index 0).
    """

    # data
    WINDOW = 0            # which part of the clip (temporal jitter), which frame
    IMAGE = 1             # image augmentation
    AUDIO = 2             # audio augmentation (gain)
    PARTNERS = 3          # a training mixture's partners
    FIXED = 4             # a fixed evaluation mixture's partners and windows
    # tasks
    MASK_IMAGE = 5        # AV-MAE / unimodal MAE: image patch masking noise
    MASK_AUDIO = 6        # AV-MAE / unimodal MAE: audio patch masking noise
    MIXUP = 7             # classification: mixup partner and weight
    MODALITY_DROPOUT = 8  # classification: which samples lose their sound
    RANDOM_DIGIT = 9      # localisation baseline: the random visible digit
    # the loader
    ORDER = 10            # the permutation of an epoch
    SOURCE = 16           # offset per mixture source (not a stream of its own)


def source_stream(stream: Stream | int, k: int) -> int:
    """The stream of mixture source ``k`` (0-based) for a data stream."""
    if int(stream) > Stream.FIXED:
        raise ValueError(f"only data streams have per-source copies, got {Stream(stream).name}")
    return int(stream) + Stream.SOURCE * (int(k) + 1)


def seed_sequence(seed: int, epoch: int, index: int, stream: int = Stream.WINDOW) -> np.random.SeedSequence:
    """The entropy of one random stream of one sample in one epoch."""
    values = [int(seed), int(epoch), int(index), int(stream)]
    if min(values) < 0:
        raise ValueError(f"seed, epoch, index and stream must be non-negative, got {values}")
    return np.random.SeedSequence(values, spawn_key=_DOMAIN)


def numpy_rng(seed: int, epoch: int, index: int, stream: int = Stream.WINDOW) -> np.random.Generator:
    """A numpy Generator for (seed, epoch, index, stream)."""
    return np.random.default_rng(seed_sequence(seed, epoch, index, stream))


def torch_generator(seed: int, epoch: int, index: int, stream: int = Stream.WINDOW) -> torch.Generator:
    """A CPU torch.Generator for (seed, epoch, index, stream)."""
    state = int(seed_sequence(seed, epoch, index, stream).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(state & (2 ** 63 - 1))


def sample_noise(seed: int, epoch: torch.Tensor | int, index: torch.Tensor, length: int, stream: Stream | int
                 ) -> torch.Tensor:
    """Uniform noise (B, length) in [0, 1) for each sample of a batch, from :func:`numpy_rng`.

    ``epoch`` is one value or one per sample; ``index`` the samples' dataset indices.
    """
    index = torch.as_tensor(index).reshape(-1).tolist()
    epochs = torch.as_tensor(epoch).reshape(-1).tolist()
    if len(epochs) == 1:
        epochs = epochs * len(index)
    rows = [numpy_rng(seed, e, i, stream).random(length, dtype=np.float32) for e, i in zip(epochs, index, strict=True)]
    return torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, length)
