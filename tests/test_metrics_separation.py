"""BSS Eval v3 sources: agreement with mir_eval, plus impulse cases computed by hand.

Hand cases use impulse references r1 = delta[0], r2 = delta[1000] (T = 3000): the spans of their
0..511-sample delays are the coordinate vectors of [0, 512) and [1000, 1512), mutually orthogonal,
so the projections just keep those samples of the estimate.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from avfusion.errors import DataError
from avfusion.metrics import Skipped
from avfusion.metrics.separation import bss_eval, evaluate_mixture, sdr_mix, summarize

T = 3000


def _impulses():
    refs = np.zeros((2, T))
    refs[0, 0] = 1.0
    refs[1, 1000] = 1.0
    est = np.zeros((2, T))
    # source 1: own 2 at 0 (energy 4), interference 1 at 1000, artifact 1 at 2000
    est[0, [0, 1000, 2000]] = [2.0, 1.0, 1.0]
    # source 2: own 3 at 1005 (9), interference 1 at 3 (1), artifact 1 at 2500 (1)
    est[1, [1005, 3, 2500]] = [3.0, 1.0, 1.0]
    return refs, est


def db(x):
    return 10 * np.log10(x)


def test_impulse_case_by_hand():
    sdr, sir, sar = bss_eval(*_impulses())
    # source 1: SDR = 4 / (1 + 1), SIR = 4 / 1, SAR = (4 + 1) / 1
    # source 2: SDR = 9 / 2, SIR = 9 / 1, SAR = 10 / 1
    np.testing.assert_allclose(sdr, [db(2), db(4.5)], atol=1e-9)
    np.testing.assert_allclose(sir, [db(4), db(9)], atol=1e-9)
    np.testing.assert_allclose(sar, [db(5), db(10)], atol=1e-9)


def test_no_interference_gives_huge_sir():
    refs, est = _impulses()
    est[1, 3] = 0.0  # source 2: own 9, artifact 1 -> SDR = SAR = 10 log10 9, SIR = 9 / 0
    sdr, sir, sar = bss_eval(torch.from_numpy(refs), torch.from_numpy(est))
    assert sdr[1] == pytest.approx(db(9)) and sar[1] == pytest.approx(db(9))
    # the interference is FFT round-off (~1e-30), not exactly 0, as in mir_eval
    assert sir[1] > 200


def test_sdr_mix_and_evaluate_mixture_by_hand():
    refs, est = _impulses()
    mix = refs.sum(axis=0)
    # mixture vs either reference: own 1, interference 1, no artifact -> SDR_mix = 10 log10 1 = 0
    np.testing.assert_allclose(sdr_mix(refs, mix), [0.0, 0.0], atol=1e-9)
    out = evaluate_mixture(refs, est, mix)
    assert out["SDR"] == pytest.approx((db(2) + db(4.5)) / 2)
    assert out["SIR"] == pytest.approx((db(4) + db(9)) / 2)
    assert out["SAR"] == pytest.approx((db(5) + db(10)) / 2)
    assert out["SDR_mix"] == pytest.approx(0.0, abs=1e-9)
    assert out["SDRi"] == pytest.approx(out["SDR"] - out["SDR_mix"])


def test_skips_silent_items():
    refs, est = _impulses()
    mix = refs.sum(axis=0)
    quiet = refs.copy()
    quiet[1] *= 3e-3  # energy 9e-6 < 1e-5
    assert evaluate_mixture(quiet, est, mix) == Skipped("silent reference")
    assert evaluate_mixture(refs, np.zeros_like(est), mix) == Skipped("silent estimate")
    assert evaluate_mixture(refs, est, np.zeros(T)) == Skipped("silent mixture")
    assert isinstance(evaluate_mixture(quiet, est, mix, silence_threshold=1e-6), dict)


def test_summarize_means_and_skips():
    res = [{"SDR": 1.0, "SIR": 2.0, "SAR": 3.0, "SDR_mix": 0.0, "SDRi": 1.0},
           {"SDR": 3.0, "SIR": 4.0, "SAR": 5.0, "SDR_mix": 1.0, "SDRi": 2.0},
           Skipped("silent estimate"), Skipped("silent estimate")]
    out = summarize(res)
    assert out["protocol"] == "bss_eval_sources_v3" and out["N"] == 2
    assert out["skipped"] == {"silent estimate": 2}
    assert (out["SDR"], out["SIR"], out["SAR"], out["SDR_mix"], out["SDRi"]) == (2, 3, 4, 0.5, 1.5)


def test_errors():
    refs, est = _impulses()
    with pytest.raises(DataError):
        bss_eval(refs, est[:, :-1])
    with pytest.raises(DataError):
        bss_eval(refs, np.zeros_like(est))
    with pytest.raises(DataError):
        evaluate_mixture(refs, est, np.ones(T - 1))


@pytest.mark.parametrize("nsrc,nsamples,seed", [(2, 1500, 0), (2, 6000, 1), (3, 2500, 2)])
def test_matches_mir_eval(nsrc, nsamples, seed):
    mir_sep = pytest.importorskip("mir_eval.separation")
    rng = np.random.default_rng(seed)
    refs = rng.standard_normal((nsrc, nsamples))
    mixing = np.eye(nsrc) + 0.4 * rng.standard_normal((nsrc, nsrc))
    est = mixing @ refs + 0.2 * rng.standard_normal((nsrc, nsamples))
    est[0] = np.convolve(est[0], [1.0, -0.6, 0.3])[:nsamples]  # a short filter distortion
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = mir_sep.bss_eval_sources(refs, est, compute_permutation=False)[:3]
        expected_mix = mir_sep.bss_eval_sources(
            refs, np.tile(refs.sum(0), (nsrc, 1)), compute_permutation=False)[0]
    np.testing.assert_allclose(np.array(bss_eval(refs, est)), np.array(expected), atol=0.01)
    np.testing.assert_allclose(sdr_mix(refs, refs.sum(0)), expected_mix, atol=0.01)
