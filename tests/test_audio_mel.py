"""Mel front end and resampler: checked against librosa / scipy on real speech and against analytic signals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synctalk_lib.audio.mel import (N_MELS, mel_filterbank, mel_from_wave, mel_spectrogram, num_mel_frames)
from synctalk_lib.audio.resample import resample, resampled_length
from synctalk_lib.media.audio import load_audio


@pytest.fixture(scope="module")
def may_speech(may_video):
    wave, rate = load_audio(may_video, duration=331 / 25)
    assert rate == 16000 and wave.shape == (1, 211840)
    return wave, rate


def _librosa_reference(wave: np.ndarray, dtype) -> np.ndarray:
    """The original pipeline written with librosa/scipy (pre-emphasis, STFT, mel, dB, normalisation)."""
    librosa = pytest.importorskip("librosa")
    from scipy.signal import lfilter

    y = lfilter([1.0, -0.97], [1.0], wave.astype(dtype)).astype(dtype)
    spec = np.abs(librosa.stft(y=y, n_fft=800, hop_length=200, win_length=800))  # librosa's default pad mode
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600, dtype=dtype)
    db = 20 * np.log10(np.maximum(1e-5, basis @ spec)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4).T


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600, dtype=np.float64)
    ours = mel_filterbank()
    assert ours.shape == (80, 401)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_librosa_pads_with_zeros():
    """The pad mode we match: librosa's stft default (zeros since 0.10). Reflection would change frame 0."""
    librosa = pytest.importorskip("librosa")
    import inspect

    assert inspect.signature(librosa.stft).parameters["pad_mode"].default == "constant"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mel_matches_librosa_on_real_speech(may_speech, dtype):
    wave, rate = may_speech
    ours = mel_from_wave(wave, rate).numpy()
    ref = _librosa_reference(wave[0], dtype)
    assert ours.shape == ref.shape == (num_mel_frames(211840), N_MELS) == (1060, 80)
    diff = np.abs(ours - ref).max()
    assert diff < 1e-3, f"max |ours - librosa| = {diff:.2e}"
    # real content, not a constant: speech spans most of the range and reaches the -4 floor in places
    assert ours.min() == -4.0 and ours.max() > 1.0 and ours.std() > 0.5


def test_mel_stereo_and_other_rates_mix_down_and_resample(may_speech):
    """A stereo 44.1 kHz copy of the speech gives nearly the same spectrogram as the 16 kHz mono original."""
    wave, rate = may_speech
    up = resample(torch.from_numpy(wave[0]), rate, 44100)
    stereo = torch.stack([up * 0.5, up * 1.5])  # mean of the channels = the original
    ours = mel_from_wave(stereo, 44100).numpy()
    ref = mel_from_wave(wave, rate).numpy()
    assert ours.shape == ref.shape
    diff = np.abs(ours - ref)
    # the 16k -> 44.1k -> 16k round trip keeps everything below its 7.5 kHz cut-off (bands 0-75 of 55-7600 Hz)
    assert diff[:, :76].max() < 0.01, diff[:, :76].max()
    assert diff[:, 76:].max() > diff[:, :76].max()  # and really does filter above it


def test_mel_of_a_tone_peaks_in_the_right_band():
    rate = 16000
    t = np.arange(rate) / rate
    wave = 0.5 * np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    mel = mel_spectrogram(torch.from_numpy(wave))
    band = int(mel[40].argmax())
    centre_hz = np.linspace(0, 8000, 401) @ mel_filterbank()[band] / mel_filterbank()[band].sum()
    assert abs(centre_hz - 1000) < 60


def _tones(t: np.ndarray) -> np.ndarray:
    return sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate((220.0, 1500.0, 3100.0, 6000.0))) / 4


@pytest.mark.parametrize("orig,new", [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000),
                                      (16000, 44100), (44101, 16000)])
def test_resample_band_limited_tones_are_exact(orig, new):
    """Tones below both Nyquist limits are reproduced at their true values (phase and frequency kept)."""
    x = _tones(np.arange(orig) / orig).astype(np.float32)
    if orig == 8000:  # the 6 kHz tone is above 8 kHz's Nyquist
        x = (np.sin(2 * np.pi * 220 * np.arange(orig) / orig) + np.sin(2 * np.pi * 3100 * np.arange(orig) / orig))
        x = x.astype(np.float32)
    y = resample(torch.from_numpy(x)[None], orig, new)[0].numpy()
    assert len(y) == resampled_length(orig, orig, new) == new
    t = np.arange(len(y)) / new
    ref = _tones(t) if orig != 8000 else np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 3100 * t)
    inner = slice(len(y) // 10, -len(y) // 10)  # away from the zero-padded ends
    assert np.abs(y - ref)[inner].max() < 1e-4


def test_resample_matches_scipy_resample_poly():
    from scipy.signal import resample_poly

    rng = np.random.default_rng(0)
    x = _tones(np.arange(44100) / 44100) + 0.05 * rng.standard_normal(44100)
    # keep the noise inside both pass bands so the two filters agree
    x = resample_poly(resample_poly(x, 1, 4), 4, 1)
    ours = resample(torch.from_numpy(x.astype(np.float32)), 44100, 16000).numpy()
    ref = resample_poly(x, 160, 441)
    inner = slice(2000, -2000)
    assert np.abs(ours - ref[:len(ours)])[inner].max() < 2e-3


def test_resample_removes_content_above_the_new_nyquist():
    rate = 48000
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 12000 * t).astype(np.float32)  # above 8 kHz: must vanish, not alias to 4 kHz
    y = resample(torch.from_numpy(x), rate, 16000).numpy()
    assert np.abs(y[1000:-1000]).max() < 1e-3


def test_resample_edge_cases():
    assert resample(torch.zeros(0), 44100, 16000).shape == (0,)
    assert resample(torch.zeros(2, 3, 0), 44100, 16000).shape == (2, 3, 0)
    same = torch.randn(5)
    assert torch.equal(resample(same, 16000, 16000), same)
    assert resample(torch.ones(2, 441), 44100, 16000).shape == (2, 160)
    with pytest.raises(ValueError):
        resample(same, 0, 16000)
