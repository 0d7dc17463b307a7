"""Audio front end: the official log-mel spectrogram, its inverse for separation, and waveform helpers.

All spectrogram functions take a torch waveform with any leading batch dimensions, (..., samples).
STFT settings follow the official front end (MODEL.md section 7): n_fft = int(0.05 * rate),
hop = rate // 64, periodic Hann window of length n_fft, centred with reflect padding.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

__all__ = [
    "stft_params",
    "pad_or_repeat",
    "mel_filterbank",
    "power_spectrogram",
    "log_mel_spectrogram",
    "mask_to_waveform",
    "random_gain",
    "resample",
]

LOG_EPS = 1e-7


def stft_params(sample_rate: int) -> tuple[int, int]:
    """(n_fft, hop) of the official front end: 50 ms window, 64 frames per second."""
    return int(0.05 * sample_rate), int(sample_rate) // 64


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


def _window(sample_rate: int, device, dtype) -> torch.Tensor:
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
    """(..., T) -> (..., n_fft // 2 + 1, T // hop + 1) power |STFT|^2."""
    return _stft(waveform, sample_rate).abs().pow(2)


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
    fb = mel_filterbank(power.shape[-2], n_mels, sample_rate).to(power)       # (F, n_mels)
    mel = (power.transpose(-1, -2) @ fb).transpose(-1, -2)                    # (..., n_mels, frames + 1)
    return torch.log10(mel + LOG_EPS)[..., :-1]


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
    fb = mel_filterbank(spec.shape[-2], n_mels, sample_rate).to(mask)         # (F, n_mels)
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
    """Band-limited resampling along the last axis with scipy.signal.resample_poly.

    The ratio new/orig is reduced to lowest terms up/down (e.g. 44100 -> 16000 is 160/441); the
    polyphase filter is scipy's default Kaiser window (beta 5). Output length is
    ceil(T * up / down). Accepts numpy arrays or torch tensors and returns the same kind.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return waveform
    from scipy.signal import resample_poly          # heavy import, only when needed
    ratio = Fraction(int(new_rate), int(orig_rate))
    is_torch = isinstance(waveform, torch.Tensor)
    x = waveform.detach().cpu().numpy() if is_torch else np.asarray(waveform)
    y = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    y = y.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32, copy=False)
    if is_torch:
        return torch.from_numpy(np.ascontiguousarray(y)).to(waveform.device)
    return y
