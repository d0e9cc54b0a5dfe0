"""Band-limited resampling in PyTorch (no torchaudio): Kaiser-windowed sinc interpolation, CPU or GPU.

Output sample ``n`` sits at input time ``t_n = n * orig_rate / new_rate`` (input samples). Its value is the
input convolved with a low-pass windowed sinc centred on ``t_n``::

    y[n] = sum_j x[j] * h(j - t_n),   h(u) = 2 fc * sinc(2 fc u) * kaiser(u / half_width)

with the cut-off ``fc = rolloff * 0.5 * min(1, new_rate / orig_rate)`` (cycles per input sample) so that nothing
above the lower of the two Nyquist frequencies survives (anti-aliasing when downsampling), and
``half_width = zero_crossings / (2 fc)`` input samples. Samples outside the signal count as zeros.

With the rate ratio reduced to ``up / down`` (44100 -> 16000 is 160 / 441), output ``n = q * up + p`` has
phase ``p`` and its taps depend only on ``p``: one ``[up, span]`` matrix holds them all, and the resampled signal
is a strided view of the input times that matrix (``_resample_polyphase``, a matmul). Odd rates whose matrix
would be huge (44101 Hz) compute the taps per output sample in chunks instead (``_resample_direct``, slower).
Memory stays bounded in both cases.
"""
from __future__ import annotations

import math

import torch

DEFAULT_ZERO_CROSSINGS = 24
"""Sinc zero crossings kept on each side: the transition band is about ``fc / zero_crossings`` wide."""
DEFAULT_ROLLOFF = 0.94
"""Cut-off as a fraction of the lower Nyquist frequency (leaves room for the transition band)."""
DEFAULT_BETA = 10.0
"""Kaiser window shape: stop-band attenuation of roughly 100 dB."""
_MAX_POLYPHASE = 1 << 23
"""Largest polyphase matrix (``up x span`` entries) before falling back to per-sample taps."""
_CHUNK = 1 << 14
_TABLE_STEPS = 512


def resampled_length(num_samples: int, orig_rate: int, new_rate: int) -> int:
    """``ceil(num_samples * new_rate / orig_rate)``: the output covers the same duration as the input."""
    return -(-int(num_samples) * int(new_rate) // int(orig_rate))


def _kernel(offsets: torch.Tensor, fc: float, half_width: float, beta: float) -> torch.Tensor:
    """Windowed-sinc taps ``h(u)`` at ``offsets`` ``u`` (input samples), any shape, float64."""
    sinc = 2.0 * fc * torch.sinc(2.0 * fc * offsets)
    ratio = (offsets / half_width).clamp(-1.0, 1.0)
    window = torch.special.i0(beta * torch.sqrt(1.0 - ratio * ratio)) / torch.special.i0(
        torch.tensor(beta, dtype=offsets.dtype, device=offsets.device))
    return torch.where(offsets.abs() <= half_width, sinc * window, torch.zeros_like(sinc))


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int, *, zero_crossings: int = DEFAULT_ZERO_CROSSINGS,
             rolloff: float = DEFAULT_ROLLOFF, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """Resample ``wave`` from ``orig_rate`` to ``new_rate`` Hz along its last axis.

    Args:
        wave: ``[..., T]`` float tensor (any device); computed in its dtype, with taps built in float64.
        orig_rate: input sample rate in Hz (positive int).
        new_rate: output sample rate in Hz (positive int).
        zero_crossings: sinc zero crossings per side (filter length / quality).
        rolloff: cut-off as a fraction of the lower Nyquist frequency, in (0, 1].
        beta: Kaiser window parameter.

    Returns:
        ``[..., resampled_length(T, orig_rate, new_rate)]`` tensor, same dtype and device as ``wave``.
    """
    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if not 0.0 < rolloff <= 1.0:
        raise ValueError(f"rolloff must be in (0, 1], got {rolloff}")
    if orig_rate == new_rate:
        return wave.clone()
    if not wave.is_floating_point():
        wave = wave.float()
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g
    fc = rolloff * 0.5 * min(1.0, up / down)
    half_width = zero_crossings / (2.0 * fc)
    taps = 2 * math.ceil(half_width) + 1

    num_out = resampled_length(wave.shape[-1], orig_rate, new_rate)
    if num_out == 0 or wave.numel() == 0:
        return wave.new_zeros(*wave.shape[:-1], num_out)
    flat = wave.reshape(-1, wave.shape[-1])
    span = (up - 1) * down // up + taps  # input samples touched by one period of `up` outputs
    if up * span <= _MAX_POLYPHASE:
        out = _resample_polyphase(flat, up, down, num_out, fc, half_width, taps, beta, span)
    else:
        out = _resample_direct(flat, up, down, num_out, fc, half_width, taps, beta)
    return out.reshape(*wave.shape[:-1], num_out)


def _resample_polyphase(flat: torch.Tensor, up: int, down: int, num_out: int, fc: float, half_width: float,
                        taps: int, beta: float, span: int) -> torch.Tensor:
    """Output period ``q`` (``up`` samples) = input samples ``[q*down, q*down + span)`` times a fixed matrix.

    Output ``n = q*up + p`` (phase ``p``) sits at input time ``q*down + p*down/up``; its taps start at input index
    ``q*down + floor(p*down/up) - taps//2``, so one ``[up, span]`` matrix holds every phase's taps and the whole
    signal is a strided view times that matrix (a matmul, much faster than gathering taps one by one).
    """
    device, dtype = flat.device, flat.dtype
    phases = torch.arange(up, device=device, dtype=torch.int64)
    shift = phases * down // up  # floor(p*down/up)
    cols = shift[:, None] + torch.arange(taps, device=device)[None, :]
    offsets = (cols - taps // 2).double() - phases.double()[:, None] * down / up
    matrix = torch.zeros(up, span, dtype=torch.float64, device=device)
    matrix.scatter_(1, cols, _kernel(offsets, fc, half_width, beta))
    matrix = matrix.to(dtype).T.contiguous()  # [span, up]

    periods = -(-num_out // up)
    needed = (periods - 1) * down + span
    left = taps // 2
    padded = torch.nn.functional.pad(flat, (left, max(needed - left - flat.shape[-1], 0)))
    frames = padded.unfold(-1, span, down)[:, :periods]  # [B, periods, span], a view
    rows_per_chunk = max(1, _CHUNK * 8 // span)
    out = torch.empty(flat.shape[0], periods, up, dtype=dtype, device=device)
    for start in range(0, periods, rows_per_chunk):
        out[:, start:start + rows_per_chunk] = frames[:, start:start + rows_per_chunk] @ matrix
    return out.reshape(flat.shape[0], periods * up)[:, :num_out]


def _resample_direct(flat: torch.Tensor, up: int, down: int, num_out: int, fc: float, half_width: float,
                     taps: int, beta: float) -> torch.Tensor:
    """Rates with many phases (e.g. 44101 -> 16000): taps looked up per output sample, in chunks (slower).

    The kernel is tabulated every ``1 / _TABLE_STEPS`` input samples and linearly interpolated (error ~1e-7).
    """
    device, dtype = flat.device, flat.dtype
    grid = torch.arange(-(taps // 2 + 1) * _TABLE_STEPS, (taps // 2 + 1) * _TABLE_STEPS + 1, device=device)
    table = _kernel(grid.double() / _TABLE_STEPS, fc, half_width, beta).to(dtype)
    origin = (taps // 2 + 1) * _TABLE_STEPS
    pad = taps // 2 + 1
    padded = torch.nn.functional.pad(flat, (pad, pad + taps))
    tap_ids = torch.arange(taps, device=device)
    out = torch.empty(flat.shape[0], num_out, dtype=dtype, device=device)
    for start in range(0, num_out, _CHUNK):
        n = torch.arange(start, min(start + _CHUNK, num_out), device=device, dtype=torch.int64)
        first = n * down // up - taps // 2  # first tap, input index
        # offset of tap 0 from the output's time, in table steps: (first - n*down/up) * _TABLE_STEPS
        remainder = (n * down) % up
        pos0 = (first - n * down // up).double() * _TABLE_STEPS - remainder.double() * _TABLE_STEPS / up
        pos = pos0[:, None] + (tap_ids * _TABLE_STEPS).double()[None, :] + origin
        low = pos.floor()
        frac = (pos - low).to(dtype)
        low = low.long()
        weights = table[low] * (1 - frac) + table[low + 1] * frac
        gathered = padded[:, (first[:, None] + tap_ids[None, :] + pad).reshape(-1)].reshape(-1, len(n), taps)
        out[:, start:start + len(n)] = (gathered * weights[None]).sum(-1)
    return out
