"""Audio front end: parity with the official vectors, padding, gain, resampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avfusion import audio
from tests.conftest import assert_close_rel


def test_logmel_matches_official(official_audio):
    assert len(official_audio["logmel"]) >= 5
    for case in official_audio["logmel"]:
        rate, dur, n_mels = case["rate"], case["dur"], case["n_mels"]
        what = f"rate={rate} dur={dur} n_mels={n_mels}"
        padded = audio.pad_or_repeat(case["waveform"], int(round(rate * dur)))
        torch.testing.assert_close(padded, case["padded"], rtol=0, atol=0, msg=what)
        ours = audio.log_mel_spectrogram(case["waveform"], rate, n_mels=n_mels, duration=dur)
        assert ours.shape == case["logmel"].shape, what
        err = (ours - case["logmel"]).abs().max().item()
        assert err <= 1e-4, f"{what}: max abs error {err:.2e} (log10 units)"


def test_mel_filterbank_matches_official(official_audio):
    for case in official_audio["separation"]:
        ref = case["mel_fb"]
        ours = audio.mel_filterbank(ref.shape[0], case["n_mels"], case["rate"])
        assert_close_rel(ours, ref, tol=1e-6, what="mel_fb")


def test_mask_to_waveform_matches_official(official_audio):
    for case in official_audio["separation"]:
        ours = audio.mask_to_waveform(case["mixture"], case["mask_logits"], case["rate"], case["n_mels"])
        assert_close_rel(ours, case["waveform"], tol=1e-4, what=f"separation n_mels={case['n_mels']}")


def test_logmel_shape_and_batch_dims():
    g = torch.Generator().manual_seed(0)
    wav = torch.rand(2, 3, 20000, generator=g) - 0.5
    out = audio.log_mel_spectrogram(wav, 16000)
    assert out.shape == (2, 3, 128, 192)
    single = audio.log_mel_spectrogram(wav[1, 2], 16000)
    torch.testing.assert_close(out[1, 2], single, rtol=0, atol=1e-5)


def test_logmel_of_silence_is_floor():
    out = audio.log_mel_spectrogram(torch.zeros(1, 48000), 16000)
    torch.testing.assert_close(out, torch.full_like(out, -7.0))


def test_logmel_rejects_integer_audio():
    with pytest.raises(TypeError):
        audio.log_mel_spectrogram(torch.zeros(100, dtype=torch.int16), 16000)


def test_logmel_tone_peaks_at_its_band():
    rate = 16000
    t = torch.arange(3 * rate) / rate
    spec = audio.log_mel_spectrogram(torch.sin(2 * torch.pi * 1000 * t), rate)
    fb = audio.mel_filterbank(401, 128, rate)
    expected_band = fb[50].argmax().item()                 # 1000 Hz is STFT bin 50 (20 Hz per bin)
    assert abs(spec.mean(-1).argmax().item() - expected_band) <= 1


def test_pad_or_repeat_hand_case():
    x = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(audio.pad_or_repeat(x, 8), torch.tensor([1.0, 2, 3, 3, 2, 1, 1, 2]))
    torch.testing.assert_close(audio.pad_or_repeat(x, 2), torch.tensor([1.0, 2]))
    with pytest.raises(ValueError):
        audio.pad_or_repeat(torch.zeros(0), 4)


def test_mel_filterbank_triangles():
    fb = audio.mel_filterbank(401, 64, 16000)
    assert fb.shape == (401, 64)
    assert fb.min() >= 0 and fb.max() <= 1
    assert torch.all(fb.max(0).values > 0.5)                # every filter peaks near 1 (no area norm)
    peaks = fb.argmax(0)
    assert torch.all(peaks[1:] >= peaks[:-1])               # ordered low -> high
    assert fb[0].sum() == 0 and fb[-1].sum() == 0           # 0 Hz and Nyquist are band edges


def test_mask_to_waveform_shapes_and_silence():
    rate = 16000
    mix = torch.randn(16000, generator=torch.Generator().manual_seed(1)) * 0.1
    zero = audio.mask_to_waveform(mix, torch.full((64, 64), -1e4), rate, 64)
    assert zero.shape == (16000,) and zero.abs().max() < 1e-6
    with pytest.raises(ValueError):
        audio.mask_to_waveform(mix, torch.zeros(64, 63), rate, 64)


def test_random_gain_uses_only_the_generator():
    wav = torch.full((1000,), 0.1)
    a = audio.random_gain(wav, torch.Generator().manual_seed(3))
    torch.manual_seed(123)                                  # global state must not matter
    b = audio.random_gain(wav, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    gains = [audio.random_gain(wav, torch.Generator().manual_seed(s))[0].item() / 0.1 for s in range(200)]
    assert min(gains) >= 10 ** (-6 / 20) - 1e-6 and max(gains) <= 10 ** (6 / 20) + 1e-6
    assert max(gains) - min(gains) > 1.0                    # gains spread over the range
    loud = audio.random_gain(torch.full((10,), 0.99), torch.Generator().manual_seed(0), 5.0, 6.0)
    assert torch.all(loud == 1.0)                           # clamped


def test_resample_length_and_frequency():
    rate_in, rate_out = 44100, 16000
    t = np.arange(rate_in) / rate_in
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = audio.resample(x, rate_in, rate_out)
    assert y.dtype == np.float32 and y.shape == (16000,)
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / rate_out)
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 1e-2
    yt = audio.resample(torch.from_numpy(np.stack([x, x])), rate_in, rate_out)
    assert isinstance(yt, torch.Tensor) and yt.shape == (2, 16000)
    np.testing.assert_allclose(yt[0].numpy(), y, atol=1e-6)
    assert audio.resample(x, 16000, 16000) is x
    with pytest.raises(ValueError):
        audio.resample(x, 0, 16000)


@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000),
                                   (16000, 44100), (32000, 16000), (11025, 16000)])
def test_resample_equals_scipy_resample_poly(rates):
    """The batched polyphase filter is resample_poly's filter and alignment: equal up to float32
    rounding (summation order), for every length, with batch dimensions, in float32 and float64."""
    from fractions import Fraction

    from scipy.signal import resample_poly
    rate_in, rate_out = rates
    r = Fraction(rate_out, rate_in)
    rng = np.random.default_rng(0)
    for n in (1, 37, 1000, 44101):
        x = (0.5 * rng.standard_normal((2, n))).astype(np.float32)
        want = resample_poly(x, r.numerator, r.denominator, axis=-1)
        got = audio.resample(x, rate_in, rate_out)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        np.testing.assert_allclose(audio.resample(x[0], rate_in, rate_out), got[0], rtol=0, atol=1e-6)
    x64 = rng.standard_normal(5000)
    np.testing.assert_allclose(audio.resample(x64, rate_in, rate_out),
                               resample_poly(x64, r.numerator, r.denominator), rtol=0, atol=1e-12)


def test_resample_integer_input_and_ratios_without_blocks_use_scipy():
    from scipy.signal import resample_poly
    x = (np.arange(3000) % 200 - 100).astype(np.int16)
    y = audio.resample(x, 44100, 16000)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, resample_poly(x, 160, 441).astype(np.float32), rtol=0, atol=1e-4)
    assert audio._polyphase_plan(16001, 16000, "<f4") is None       # up = 16001 (prime): scipy
    z = np.random.default_rng(1).standard_normal(2000).astype(np.float32)
    np.testing.assert_array_equal(audio.resample(z, 16000, 16001),
                                  resample_poly(z, 16001, 16000).astype(np.float32))


def test_logmel_caches_do_not_leak_between_calls():
    wav = torch.rand(48000, generator=torch.Generator().manual_seed(4)) - 0.5
    first = audio.log_mel_spectrogram(wav, 16000)
    audio.log_mel_spectrogram(wav * 3, 16000, n_mels=64)
    torch.testing.assert_close(audio.log_mel_spectrogram(wav, 16000), first, rtol=0, atol=0)
    torch.testing.assert_close(audio._filterbank(401, 128, 16000), audio.mel_filterbank(401, 128, 16000),
                               rtol=0, atol=0)
