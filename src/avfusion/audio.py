"""Audio front end: the official log-mel spectrogram, its inverse for separation, and waveform helpers.

All spectrogram functions take a torch waveform with any leading batch dimensions, (..., samples).
STFT settings follow the official front end (docs/model.md, audio front end): n_fft = int(0.05 * rate),
hop = rate // 64, periodic Hann window of length n_fft, centred with reflect padding.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "FRAMES_PER_SECOND",
    "stft_params",
    "num_frames",
    "pad_or_repeat",
    "mel_filterbank",
    "power_spectrogram",
    "log_mel_spectrogram",
    "mask_to_waveform",
    "random_gain",
    "resample",
]

LOG_EPS = 1e-7
#: Spectrogram frames per second of audio (hop = rate // 64): the official front end's, everywhere.
FRAMES_PER_SECOND = 64


def stft_params(sample_rate: int) -> tuple[int, int]:
    """(n_fft, hop) of the official front end: 50 ms window, FRAMES_PER_SECOND frames per second."""
    return int(0.05 * sample_rate), int(sample_rate) // FRAMES_PER_SECOND


def num_frames(window: float, sample_rate: int) -> int:
    """Spectrogram frames of a window of ``window`` seconds: samples // hop (192 for 3 s)."""
    return int(round(window * sample_rate)) // stft_params(sample_rate)[1]


def pad_or_repeat(waveform: torch.Tensor, num_samples: int) -> torch.Tensor:
    """(..., T) -> (..., num_samples).

    While too short, append the time-reversed copy of the current signal (so the result alternates
    forward and reversed copies without a jump at the seams); then crop from the start.
    """
    if waveform.shape[-1] == 0:
        raise ValueError("cannot pad an empty waveform")
    while waveform.shape[-1] < num_samples:
        waveform = torch.cat([waveform, waveform.flip(-1)], dim=-1)
    return waveform[..., :num_samples]


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """HTK-scale triangular filters from 0 Hz to Nyquist, peak 1, no area normalisation.

    Returns (n_freqs, n_mels) float32, so that `power (..., T, n_freqs) @ fb` gives mel power.
    Nyquist is `sample_rate // 2` (integer division, as the official front end uses). Computed in
    float32 on purpose: this reproduces the official filters bit for bit (float64 differs by ~1e-5,
    which moves low-energy log-mel bins by up to ~6e-5).
    """
    nyquist = float(int(sample_rate) // 2)
    mel_max = 2595.0 * math.log10(1.0 + nyquist / 700.0)                      # HTK mel scale
    freqs = torch.linspace(0.0, nyquist, n_freqs, dtype=torch.float32)        # (n_freqs,)
    mel_pts = torch.linspace(0.0, mel_max, n_mels + 2, dtype=torch.float32)
    hz_pts = 700.0 * (10.0 ** (mel_pts / 2595.0) - 1.0)                       # (n_mels + 2,) band edges
    widths = hz_pts[1:] - hz_pts[:-1]                                         # (n_mels + 1,)
    dist = hz_pts[None, :] - freqs[:, None]                                   # (n_freqs, n_mels + 2)
    rising = -dist[:, :-2] / widths[:-1]                                      # (n_freqs, n_mels)
    falling = dist[:, 2:] / widths[1:]
    return torch.minimum(rising, falling).clamp(min=0.0)


@lru_cache(maxsize=32)
def _filterbank(n_freqs: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """`mel_filterbank`, computed once per setting (read-only: shared by every call)."""
    return mel_filterbank(n_freqs, n_mels, sample_rate)


@lru_cache(maxsize=32)
def _window(sample_rate: int, device, dtype) -> torch.Tensor:
    """The periodic Hann window, computed once per setting (read-only: shared by every call)."""
    n_fft, _ = stft_params(sample_rate)
    return torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)


def _stft(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(..., T) -> complex (..., n_fft // 2 + 1, T // hop + 1)."""
    n_fft, hop = stft_params(sample_rate)
    lead = waveform.shape[:-1]
    flat = waveform.reshape(-1, waveform.shape[-1])                           # (N, T)
    spec = torch.stft(flat, n_fft, hop_length=hop, win_length=n_fft,
                      window=_window(sample_rate, flat.device, flat.dtype),
                      center=True, pad_mode="reflect", normalized=False, onesided=True,
                      return_complex=True)                                    # (N, F, frames)
    return spec.reshape(*lead, *spec.shape[-2:])


def power_spectrogram(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(..., T) -> (..., n_fft // 2 + 1, T // hop + 1) power |STFT|^2 = re^2 + im^2 (the same as
    squaring the magnitude up to float rounding, without its square root)."""
    parts = torch.view_as_real(_stft(waveform, sample_rate))                  # (..., F, frames, 2)
    re, im = parts[..., 0], parts[..., 1]
    return torch.addcmul(re * re, im, im)


def log_mel_spectrogram(waveform: torch.Tensor, sample_rate: int, n_mels: int = 128,
                        duration: float = 3.0) -> torch.Tensor:
    """(..., T) -> (..., n_mels, frames): the official log10 mel power spectrogram.

    The waveform is first brought to round(duration * rate) samples with `pad_or_repeat`;
    frames = samples // hop (the last STFT frame is dropped), 192 for 3 s at 16 kHz.
    """
    if not torch.is_floating_point(waveform):
        raise TypeError(f"waveform must be a floating-point tensor, got {waveform.dtype}")
    num_samples = int(round(duration * sample_rate))
    waveform = pad_or_repeat(waveform, num_samples)
    power = power_spectrogram(waveform, sample_rate)                          # (..., F, frames + 1)
    fb = _filterbank(power.shape[-2], n_mels, sample_rate).to(power)          # (F, n_mels)
    mel = (power.transpose(-1, -2) @ fb).transpose(-1, -2)                    # (..., n_mels, frames + 1)
    return mel.add_(LOG_EPS).log10_()[..., :-1]


def mask_to_waveform(mixture: torch.Tensor, mask_logits: torch.Tensor, sample_rate: int,
                     n_mels: int) -> torch.Tensor:
    """Re-synthesise a source from a mel-resolution mask and the mixture (its phase and magnitude).

    mixture (..., T), mask_logits (..., n_mels, frames) with frames = T // hop (the dropped last frame
    is restored as a zero mask frame); returns (..., T). Leading dimensions broadcast, so a (1, M, F)
    mask against a (T,) mixture gives (1, T), as the official code does.
    """
    mask = torch.sigmoid(mask_logits)
    mask = torch.cat([mask, mask.new_zeros(*mask.shape[:-1], 1)], dim=-1)     # (..., n_mels, frames + 1)
    spec = _stft(mixture, sample_rate)                                        # (..., F, frames + 1)
    if spec.shape[-1] != mask.shape[-1]:
        raise ValueError(f"mask has {mask.shape[-1] - 1} frames, expected {spec.shape[-1] - 1} for "
                         f"{mixture.shape[-1]} samples at {sample_rate} Hz")
    fb = _filterbank(spec.shape[-2], n_mels, sample_rate).to(mask)            # (F, n_mels)
    linear_mask = fb @ mask                                                   # (..., F, frames + 1)
    masked = spec * linear_mask
    lead = masked.shape[:-2]
    flat = masked.reshape(-1, *masked.shape[-2:])
    n_fft, hop = stft_params(sample_rate)
    out = torch.istft(flat, n_fft, hop_length=hop, win_length=n_fft,
                      window=_window(sample_rate, flat.device, mixture.dtype),
                      center=True, normalized=False, onesided=True, length=mixture.shape[-1])
    return out.reshape(*lead, out.shape[-1])


def random_gain(waveform: torch.Tensor, generator: torch.Generator, low_db: float = -6.0,
                high_db: float = 6.0) -> torch.Tensor:
    """Multiply by one gain drawn uniformly in [low_db, high_db] dB, then clamp to [-1, 1].

    One gain per call (the whole tensor), drawn from `generator` only.
    """
    u = torch.rand((), generator=generator, device=generator.device).item()
    gain_db = low_db + (high_db - low_db) * u
    return (waveform * (10.0 ** (gain_db / 20.0))).clamp(-1.0, 1.0)


def resample(waveform, orig_rate: int, new_rate: int):
    """Band-limited resampling along the last axis: `scipy.signal.resample_poly`'s filter and alignment.

    The ratio new/orig is reduced to lowest terms up/down (e.g. 44100 -> 16000 is 160/441); the
    polyphase filter is scipy's default Kaiser window (beta 5), output length ceil(T * up / down),
    zeros assumed outside the signal, exactly as `resample_poly(x, up, down)`. Float input is filtered
    as one batched matrix product over blocks of outputs (`_polyphase`, about 10x faster than scipy for
    44.1 -> 16 kHz); it equals scipy's result up to float rounding (summation order, ~1 ulp of the
    signal's scale). Other inputs, and ratios without a usable block structure, go through scipy.
    Accepts numpy arrays or torch tensors and returns the same kind (float32 for integer input).
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return waveform
    ratio = Fraction(int(new_rate), int(orig_rate))
    up, down = ratio.numerator, ratio.denominator
    is_torch = isinstance(waveform, torch.Tensor)
    x = waveform.detach().cpu().numpy() if is_torch else np.asarray(waveform)
    plan = _polyphase_plan(up, down, x.dtype.str) if x.dtype in (np.float32, np.float64) else None
    if plan is not None and x.shape[-1] > 0:
        y = _polyphase(torch.from_numpy(np.ascontiguousarray(x)), up, down, plan)
        return y.to(waveform.device) if is_torch else y.numpy()
    from scipy.signal import resample_poly          # heavy import, only when needed
    y = resample_poly(x, up, down, axis=-1)
    y = y.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32, copy=False)
    if is_torch:
        return torch.from_numpy(np.ascontiguousarray(y)).to(waveform.device)
    return y


_BLOCK = 32    # at most this many consecutive outputs share one input window in `_polyphase`


@lru_cache(maxsize=16)
def _polyphase_plan(up: int, down: int, dtype: str):
    """Filter matrices of `_polyphase` for up/down (lowest terms) and a numpy dtype string; None when
    the ratio has no block of 8..32 outputs that repeats with a whole input step (use scipy then).

    resample_poly computes y[n] = sum_k g(n * down - k * up) x[k] with g(d) = up * h[d + half],
    h = firwin(2 * half + 1, 1 / max(up, down), kaiser 5) cast to x's dtype, half = 10 * max(up, down).
    Outputs are taken in groups of G = m * up (a whole number of filter periods, m * down inputs
    apart), each group split into S blocks of `size` consecutive outputs; block s of every group
    reads a window of `width` inputs starting `s * step` after the group's first window, so that one
    strided view of the zero-padded input times block s's (width, size) matrix gives its outputs.
    """
    from scipy.signal import firwin
    half = 10 * max(up, down)
    h = firwin(2 * half + 1, 1.0 / max(up, down), window=("kaiser", 5.0)).astype(dtype)
    h *= up                                                  # in x's dtype, as resample_poly does
    m = 1 if up >= 16 else -(-16 // up)
    group, advance = m * up, m * down
    size = max(d for d in range(1, _BLOCK + 1) if group % d == 0)
    if size < 8:
        return None
    blocks = group // size
    step = size * down // up
    lead = half // up                                        # inputs needed before x[0]: -ceil(-half / up)
    n = np.arange(group).reshape(blocks, size)               # output index within a group
    first = -lead + step * np.arange(blocks)                 # first input of each block's window
    width = int(((n[:, -1] * down + half) // up - first).max()) + 1
    k = first[:, None] + np.arange(width)[None, :]           # (blocks, width) input index
    d = n[:, None, :] * down - k[:, :, None] * up            # (blocks, width, size) filter offset
    taps = np.where(np.abs(d) <= half, h[np.clip(d + half, 0, 2 * half)], 0).astype(dtype)
    return torch.from_numpy(taps), blocks, size, step, advance, group, width, lead


def _polyphase(x: torch.Tensor, up: int, down: int, plan) -> torch.Tensor:
    """(..., T) float -> (..., ceil(T * up / down)) with a plan from `_polyphase_plan`."""
    taps, blocks, size, step, advance, group, width, lead = plan
    n_in = x.shape[-1]
    flat = x.reshape(-1, n_in)
    n_out = -(-n_in * up // down)
    groups = -(-n_out // group)
    length = (groups - 1) * advance + (blocks - 1) * step + width
    rows = flat.shape[0]
    padded = flat.new_empty(rows, length)
    keep = min(n_in, length - lead)                          # later inputs reach no kept output
    padded[:, :lead] = 0
    padded[:, lead:lead + keep] = flat[:, :keep]
    padded[:, lead + keep:] = 0
    y = flat.new_empty(rows, groups, blocks, size)
    for r in range(rows):
        for s in range(blocks):                              # (groups, width) windows: a strided view, no copy
            windows = padded[r].as_strided((groups, width), (advance, 1), r * length + s * step)
            torch.matmul(windows, taps[s], out=y[r, :, s])
    return y.reshape(rows, groups * group)[:, :n_out].reshape(*x.shape[:-1], n_out).contiguous()
