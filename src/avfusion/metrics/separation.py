"""Source separation: BSS Eval v3 `bss_eval_sources` (as mir_eval computes it), SDR_mix, SDRi.

`bss_eval` reproduces ``mir_eval.separation.bss_eval_sources(ref, est, compute_permutation=False)``:
each estimate is projected by least squares onto the span of its own reference delayed by
0..511 samples (giving the filtered target) and onto the span of all references delayed the same
way; the residuals give interference and artifacts (Vincent et al. 2006). Differences from
mir_eval's code are in speed only: the Gram matrix of delayed references is built once per call
from real FFT cross-correlations and every system is solved with all right-hand sides at once.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft
from scipy.linalg import cho_factor, cho_solve

from avfusion.errors import DataError

from ._common import Skipped, split_skipped, to_numpy

logger = logging.getLogger(__name__)

FILTER_LEN = 512
PROTOCOL = "bss_eval_sources_v3"
METRICS = ("SDR", "SIR", "SAR", "SDR_mix", "SDRi")


def _as_sources(x: Any, name: str) -> np.ndarray:
    arr = to_numpy(x, name, ndim=(1, 2))
    return arr[None] if arr.ndim == 1 else arr


def _solve(g: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Solve the (symmetric, positive semi-definite) normal equations g x = d."""
    try:
        return cho_solve(cho_factor(g, check_finite=False), d, check_finite=False)
    except np.linalg.LinAlgError:  # singular Gram matrix: least squares, as mir_eval does
        return np.linalg.lstsq(g, d, rcond=None)[0]


def _db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(den == 0, np.inf, 10 * np.log10(num / np.where(den == 0, 1, den)))


def _decompose(refs: np.ndarray, ests: np.ndarray, targets: np.ndarray, flen: int = FILTER_LEN):
    """SDR, SIR, SAR of each estimate row against the reference row targets[m].

    refs: (n, T) references; ests: (m, T) estimates; targets: (m,) reference index per estimate.
    """
    n, t = refs.shape
    length = t + flen - 1  # support of a length-T signal filtered by a flen-tap filter
    nfft = next_fast_len(length, real=True)
    rf = rfft(refs, nfft, axis=1)  # (n, F)
    ef = rfft(ests, nfft, axis=1)  # (m, F)
    lags = np.arange(flen)

    # Gram matrix of delayed references: G[(i, a), (j, b)] = <r_i(. - a), r_j(. - b)> = c_ij[b - a]
    # with c_ij[k] = sum_t r_i[t + k] r_j[t] (circular indices are linear: nfft >= T + flen - 1).
    cc = irfft(rf[:, None, :] * np.conj(rf[None, :, :]), nfft, axis=2)  # (n, n, nfft)
    gram = cc[:, :, (lags[None, :] - lags[:, None]) % nfft]  # (n, n, flen, flen)
    gram = gram.transpose(0, 2, 1, 3).reshape(n * flen, n * flen)
    # D[(i, a), m] = <r_i(. - a), e_m> = d_im[-a], d_im[k] = sum_t r_i[t + k] e_m[t]
    dc = irfft(rf[:, None, :] * np.conj(ef[None, :, :]), nfft, axis=2)  # (n, m, nfft)
    rhs = dc[:, :, (-lags) % nfft].transpose(0, 2, 1).reshape(n * flen, -1)  # (n*flen, m)

    def project(coef: np.ndarray, ref_f: np.ndarray) -> np.ndarray:
        # coef: (k, flen, m) filters for references ref_f (k, F) -> (m, length) projections
        cf = rfft(coef, nfft, axis=1)  # (k, F, m)
        return irfft(np.einsum("kfm,kf->mf", cf, ref_f), nfft, axis=1)[:, :length]

    p_all = project(_solve(gram, rhs).reshape(n, flen, -1), rf)  # onto all references
    p_own = np.empty_like(p_all)  # onto the target reference only
    for j in np.unique(targets):
        sel = np.flatnonzero(targets == j)
        blk = slice(j * flen, (j + 1) * flen)
        coef = _solve(gram[blk, blk], rhs[blk][:, sel])
        p_own[sel] = project(coef[None], rf[j:j + 1])

    e = np.zeros_like(p_all)
    e[:, :t] = ests
    s_filt, e_interf, e_artif = p_own, p_all - p_own, e - p_all
    energy = lambda x: np.sum(x * x, axis=1)  # noqa: E731
    sdr = _db(energy(s_filt), energy(e_interf + e_artif))
    sir = _db(energy(s_filt), energy(e_interf))
    sar = _db(energy(p_all), energy(e_artif))
    return sdr, sir, sar


def _check_pair(refs: np.ndarray, ests: np.ndarray) -> None:
    if refs.shape != ests.shape:
        raise DataError(f"references {refs.shape} and estimates {ests.shape} must have the same "
                        "(sources, samples) shape")
    for name, x in (("reference", refs), ("estimate", ests)):
        silent = np.flatnonzero(np.sum(x * x, axis=1) == 0)
        if silent.size:
            raise DataError(f"{name} source(s) {silent.tolist()} are all zeros; BSS Eval is "
                            "undefined for silent sources (evaluate_mixture skips them instead)")


def bss_eval(references: Any, estimates: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-source (SDR, SIR, SAR) in dB; estimate j is scored against reference j.

    references, estimates: (sources, samples) or (samples,) arrays (numpy or torch).
    Equals mir_eval's bss_eval_sources with compute_permutation=False (512-tap filters).
    """
    refs, ests = _as_sources(references, "references"), _as_sources(estimates, "estimates")
    _check_pair(refs, ests)
    return _decompose(refs, ests, np.arange(len(refs)))


def sdr_mix(references: Any, mixture: Any) -> np.ndarray:
    """SDR of the unprocessed mixture taken as the estimate of every reference, per source."""
    refs = _as_sources(references, "references")
    mix = to_numpy(mixture, "mixture", ndim=1)
    ests = np.broadcast_to(mix, refs.shape)
    _check_pair(refs, ests)
    return _decompose(refs, np.ascontiguousarray(ests), np.arange(len(refs)))[0]


def evaluate_mixture(references: Any, estimates: Any, mixture: Any,
                     silence_threshold: float = 1e-5) -> dict[str, float] | Skipped:
    """One mixture -> {SDR, SIR, SAR, SDR_mix, SDRi} averaged over its sources, or `Skipped`.

    Skipped (reason "silent reference" / "silent estimate" / "silent mixture", checked in that
    order) when any of them has energy sum(x**2) < silence_threshold.
    """
    refs, ests = _as_sources(references, "references"), _as_sources(estimates, "estimates")
    mix = to_numpy(mixture, "mixture", ndim=1)
    if refs.shape != ests.shape or mix.shape[0] != refs.shape[1]:
        raise DataError(f"references {refs.shape}, estimates {ests.shape} and mixture "
                        f"{mix.shape} must share the number of samples and sources")
    for name, x in (("reference", refs), ("estimate", ests), ("mixture", mix[None])):
        if np.any(np.sum(x * x, axis=1) < silence_threshold):
            return Skipped(f"silent {name}")
    n = len(refs)
    stacked = np.concatenate([ests, np.broadcast_to(mix, refs.shape)])  # (2n, T)
    sdr, sir, sar = _decompose(refs, stacked, np.concatenate([np.arange(n)] * 2))
    out = {"SDR": sdr[:n].mean(), "SIR": sir[:n].mean(), "SAR": sar[:n].mean(),
           "SDR_mix": sdr[n:].mean()}
    out["SDRi"] = out["SDR"] - out["SDR_mix"]
    return {k: float(v) for k, v in out.items()}


def summarize(results: Sequence[dict[str, float] | Skipped], protocol: str = PROTOCOL) -> dict:
    """Per-mixture results -> {protocol, N, skipped, SDR, SIR, SAR, SDR_mix, SDRi} (means)."""
    scored, skipped = split_skipped(results)
    out: dict = {"protocol": protocol, "N": len(scored), "skipped": skipped}
    if skipped:
        logger.info("separation (%s): skipped %s", protocol, skipped)
    for key in METRICS:
        out[key] = float(np.mean([r[key] for r in scored])) if scored else float("nan")
    return out
