"""The lip-sync mel front end that the audio-visual encoder (AVE) expects, in PyTorch (CPU or GPU).

Same constants as the original SyncTalk (the Wav2Lip / SyncNet set), see ``docs/reference-synctalk.md`` §1.1:

1. mono mix-down (mean of the channels), resampling to 16 kHz (``synctalk_lib.audio.resample``);
2. pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]`` (the first sample passes unchanged);
3. STFT: ``n_fft = 800``, hop 200, periodic Hann window of 800, ``center=True`` with **zero** padding of 400
   samples each side. That is librosa's default pad mode since 0.10 (``pad_mode="constant"``, checked against the
   installed librosa 0.11 by ``tests/test_audio_mel.py``); older librosa reflected the signal, which changes only the
   first and last 2 mel frames. Magnitude ``|S|`` (not power);
4. 80 Slaney mel bands from 55 to 7600 Hz with Slaney area normalisation (librosa's defaults), built here;
5. ``20 log10(max(1e-5, mel)) - 20`` dB, then ``clip(8 (dB + 100) / 100 - 4, -4, 4)``.

Output: ``[T_mel, 80]`` with ``T_mel = 1 + floor(num_samples_16k / 200)``, i.e. 80 mel frames per second, frame
``k`` centred on sample ``200 k``. Computed in float64 (cheap at this size) so the result matches a float64 librosa
reference to ~1e-6 regardless of device.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from synctalk_lib.audio.resample import resample

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL = 1e-5
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS = 4.0
MEL_FPS = SAMPLE_RATE / HOP
"""Mel frames per second (80)."""


# --------------------------------------------------------------------------------------------- mel filter bank
def hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory scale: linear below 1 kHz (3 bands per 200 Hz), logarithmic above (27 bands per x6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    """Inverse of ``hz_to_mel_slaney``."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3.0)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Triangular Slaney mel filters with area (Slaney) normalisation.

    Band ``i`` rises linearly from edge ``i`` to its peak at edge ``i + 1`` and falls to zero at edge ``i + 2``,
    the ``n_mels + 2`` edges being equally spaced on the Slaney mel scale between ``fmin`` and ``fmax``; each band
    is scaled by ``2 / (edge[i + 2] - edge[i])`` (Hz) so all bands have the same area.

    Returns:
        ``[n_mels, n_fft // 2 + 1]`` float64 (read-only; cached).
    """
    bins_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2))
    widths = np.diff(edges)
    rising = (bins_hz[None, :] - edges[:-2, None]) / widths[:-1, None]
    falling = (edges[2:, None] - bins_hz[None, :]) / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights.setflags(write=False)
    return weights


# ----------------------------------------------------------------------------------------------- spectrogram
def to_mono_16k(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``[C, T]`` (or ``[T]``) at ``sample_rate`` -> mono ``[T16]`` at 16 kHz (mean of the channels)."""
    if wave.ndim == 1:
        wave = wave[None]
    mono = wave.mean(dim=0)
    return resample(mono, int(sample_rate), SAMPLE_RATE)


def num_mel_frames(num_samples_16k: int) -> int:
    """``1 + floor(num_samples / hop)``: the frame count of a centred STFT."""
    return 1 + int(num_samples_16k) // HOP


def mel_spectrogram(wave_16k: torch.Tensor) -> torch.Tensor:
    """Normalised log-mel spectrogram of mono 16 kHz audio.

    Args:
        wave_16k: ``[T]`` float tensor, mono, 16 kHz (any device).

    Returns:
        ``[1 + T // 200, 80]`` float32 in ``[-4, 4]``, on the input's device.
    """
    x = wave_16k.to(torch.float64)
    emphasised = torch.cat([x[:1], x[1:] - PREEMPHASIS * x[:-1]])
    window = torch.hann_window(WIN, periodic=True, dtype=torch.float64, device=x.device)
    spec = torch.stft(emphasised, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window=window, center=True,
                      pad_mode="constant", return_complex=True)  # [401, T_mel]
    basis = torch.from_numpy(np.array(mel_filterbank())).to(x.device)
    mel = basis @ spec.abs()  # [80, T_mel]
    db = 20.0 * torch.log10(mel.clamp_min(MIN_LEVEL)) - REF_LEVEL_DB
    norm = (2.0 * MAX_ABS * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS).clamp(-MAX_ABS, MAX_ABS)
    return norm.T.contiguous().to(torch.float32)


def mel_from_wave(wave: np.ndarray | torch.Tensor, sample_rate: int, device: torch.device | str = "cpu"
                  ) -> torch.Tensor:
    """Mix down, resample to 16 kHz and compute the normalised mel spectrogram.

    Args:
        wave: ``[C, T]`` or ``[T]`` float audio at ``sample_rate`` (numpy or torch).
        sample_rate: Hz.
        device: where to compute.

    Returns:
        ``[T_mel, 80]`` float32 on ``device``.
    """
    tensor = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave)
    tensor = tensor.to(device=device, dtype=torch.float32)
    return mel_spectrogram(to_mono_16k(tensor, sample_rate))
