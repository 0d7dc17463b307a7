"""Sampling: windows, dense evaluation, still-frame slots, mixtures, and seeding by (seed, epoch, index)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avfusion.data.sampling import (Stream, choose_frame, dense_windows, eval_window, fixed_mixtures,
                                    mixture_sources, numpy_rng, slot_window, torch_generator, train_window)


def test_generators_depend_only_on_seed_epoch_index_stream():
    a = numpy_rng(3, 1, 7, Stream.WINDOW).uniform(size=4)
    numpy_rng(3, 1, 6, Stream.WINDOW).uniform(size=100)          # other samples drawn in between
    assert np.array_equal(a, numpy_rng(3, 1, 7, Stream.WINDOW).uniform(size=4))
    for other in [(4, 1, 7, 0), (3, 2, 7, 0), (3, 1, 8, 0), (3, 1, 7, 1)]:
        assert not np.array_equal(a, numpy_rng(*other).uniform(size=4))
    g1, g2 = torch_generator(3, 1, 7), torch_generator(3, 1, 7)
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))
    other = torch.rand(5, generator=torch_generator(3, 2, 7))
    assert not torch.equal(other, torch.rand(5, generator=torch_generator(3, 1, 7)))
    with pytest.raises(ValueError):
        numpy_rng(-1, 0, 0)


def test_train_window_jitters_over_the_whole_span_with_the_frame_at_its_centre():
    rng = np.random.default_rng(0)
    windows = [train_window(0.0, 10.0, 3.0, rng) for _ in range(400)]
    starts = np.array([w.start for w in windows])
    assert starts.min() >= 0 and starts.max() <= 7.0
    assert starts.min() < 0.2 and starts.max() > 6.8                # uniform over [0, 7]
    assert all(abs(w.duration - 3.0) < 1e-12 and abs(w.frame - (w.start + 1.5)) < 1e-12 for w in windows)
    w = train_window(2.0, 3.0, 3.0, rng)                             # span shorter than the window
    assert (w.start, w.end, w.frame) == (2.0, 5.0, 2.5)              # frame: centre of the part inside


def test_eval_window_is_centred():
    w = eval_window(0.0, 10.0, 3.0)
    assert (w.start, w.end, w.frame) == (3.5, 6.5, 5.0)
    assert eval_window(1.0, 2.0, 3.0).start == 1.0


def test_dense_windows_span_the_central_ten_seconds():
    ws = dense_windows(0.0, 10.0, 3.0, 10)
    assert len(ws) == 10
    assert np.allclose([w.start for w in ws], np.linspace(0, 7, 10))
    assert ws[0].start == 0.0 and ws[-1].end == 10.0
    long = dense_windows(0.0, 30.0, 3.0, 10)                        # central 10 s of a 30 s clip
    assert long[0].start == 10.0 and long[-1].end == 20.0
    short = dense_windows(0.0, 4.0, 3.0, 10)
    assert short[0].start == 0.0 and short[-1].end == 4.0
    assert all(abs(w.frame - (w.start + 1.5)) < 1e-12 for w in long)


def test_slot_windows_of_still_frames():
    w = slot_window(0.0, 5.0, 3.0, 0, 5)                             # AVSBench: frame k shows second k
    assert (w.start, w.end, w.frame) == (0.0, 3.0, 0.5)
    w = slot_window(0.0, 5.0, 3.0, 2, 5)
    assert (w.start, w.end, w.frame) == (1.0, 4.0, 2.5)
    assert slot_window(0.0, 5.0, 3.0, 4, 5).end == 5.0
    rng = np.random.default_rng(1)
    frames = [slot_window(0.0, 5.0, 3.0, 3, 5, rng).frame for _ in range(50)]
    assert min(frames) >= 3.0 and max(frames) <= 4.0 and np.std(frames) > 0.1


def test_choose_frame_prefers_annotated_frames():
    assert choose_frame(5) == 2
    assert choose_frame(5, [True, False, False, False, False]) == 0
    rng = np.random.default_rng(0)
    picks = {choose_frame(5, [False, True, False, True, False], rng) for _ in range(40)}
    assert picks == {1, 3}


def test_mixture_sources_are_distinct_and_avoid_shared_labels():
    labels = [(0,), (0,), (1,), (2,), (3,)]
    for seed in range(30):
        mix = mixture_sources(0, 5, 3, np.random.default_rng(seed), labels)
        assert mix[0] == 0 and len(set(mix)) == 3
        assert 1 not in mix                                          # shares label 0 with item 0
    same = [(0,)] * 4                                                # no partner without a shared label
    mix = mixture_sources(2, 4, 2, np.random.default_rng(0), same)
    assert mix[0] == 2 and mix[1] != 2
    with pytest.raises(ValueError):
        mixture_sources(0, 1, 2, np.random.default_rng(0))


def test_fixed_mixtures_do_not_change():
    a = fixed_mixtures(10, 2, seed=5)
    assert a == fixed_mixtures(10, 2, seed=5) and a != fixed_mixtures(10, 2, seed=6)
    assert [m[0] for m in a] == list(range(10))
    assert len(fixed_mixtures(4, 2, seed=0, count=9)) == 9
