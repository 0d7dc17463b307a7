"""The one table of per-sample random streams: every use draws from its own generator."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from avfusion.randomness import Stream, numpy_rng, sample_noise, seed_sequence, source_stream


def _all_uses(max_sources: int = 8) -> dict[str, int]:
    """Every stream number the package can draw: each stream, and each data stream per mixture source."""
    uses = {s.name: int(s) for s in Stream if s is not Stream.SOURCE}
    for s in Stream:
        if s <= Stream.FIXED:
            for k in range(max_sources):
                uses[f"{s.name}@source{k}"] = source_stream(s, k)
    return uses


def test_every_use_has_its_own_stream():
    uses = _all_uses()
    assert len(set(uses.values())) == len(uses), uses
    # and their generators differ, sample by sample, epoch by epoch
    for seed, epoch, index in itertools.product((0, 3), (0, 1), (0, 5, 17)):
        states = {name: tuple(seed_sequence(seed, epoch, index, v).generate_state(4)) for name, v in uses.items()}
        assert len(set(states.values())) == len(states)


def test_masking_noise_is_not_the_window_draw_of_the_same_sample():
    """The bug this table fixes: pretraining's image masking noise used stream 0, the data's window stream,
    so patch k's noise was the temporal-jitter draw of the same sample."""
    index = torch.tensor([0, 1, 2, 3])
    masks = sample_noise(0, 2, index, 8, Stream.MASK_IMAGE)
    windows = torch.from_numpy(np.stack([numpy_rng(0, 2, i, Stream.WINDOW).random(8, dtype=np.float32)
                                         for i in range(4)]))
    assert not torch.equal(masks, windows)
    for other in (Stream.MASK_AUDIO, Stream.MIXUP, Stream.MODALITY_DROPOUT, Stream.ORDER):
        assert not torch.equal(masks, sample_noise(0, 2, index, 8, other))


def test_sample_streams_are_apart_from_the_scene_generator():
    """AV-Digits scenes seed from four plain integers; the sample streams live in their own domain."""
    plain = np.random.SeedSequence([0, 1, 2, 3]).generate_state(4)
    assert not np.array_equal(seed_sequence(0, 1, 2, 3).generate_state(4), plain)


def test_sample_noise_is_a_function_of_the_sample_only():
    a = sample_noise(0, 2, torch.tensor([5, 9]), 16, Stream.MASK_IMAGE)
    b = sample_noise(0, torch.tensor([2, 2, 2]), torch.tensor([9, 1, 5]), 16, Stream.MASK_IMAGE)
    assert torch.equal(a[0], b[2]) and torch.equal(a[1], b[0])
    assert a.dtype == torch.float32 and ((a >= 0) & (a < 1)).all()


def test_only_data_streams_have_per_source_copies():
    assert source_stream(Stream.IMAGE, 1) == int(Stream.IMAGE) + 2 * int(Stream.SOURCE)
    with pytest.raises(ValueError, match="MIXUP"):
        source_stream(Stream.MIXUP, 0)
