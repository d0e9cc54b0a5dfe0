"""``encode_audio``: a waveform -> ``AudioFeatures``, one row per video frame at the video's fps.

Encoders (the ``encoder`` argument):

- ``"ave"``: the official SyncTalk audio-visual encoder through the Hub registry -> ``[N, 512]``,
  ``encoder_id = "ave:<sha256[:8]>"``. The official weights are CC BY-NC 4.0 (non-commercial use only).
- ``"ave-file:<path>"``: an AVE checkpoint in the official layout, e.g. made by ``ave-train`` -> ``[N, 512]``,
  ``encoder_id = "ave-file:<sha256[:8]>"``.
- ``"mel"``: no weights: the normalised mel window of each frame, flattened (80 bins x 16 frames, bin-major,
  like the AVE's ``[80, 16]`` input) -> ``[N, 1280]``, ``encoder_id = "mel-v1"``. The whole pipeline then runs
  offline; lip sync is learnt by the renderer's audio network alone.
- ``"auto"``: ``ave`` when its weights are in a models folder or downloadable, else ``mel`` with a warning.

Rows: ``N = windows.frame_count(samples, rate, fps)`` (frames the audio covers, rounded half up), windows aligned
as in ``windows``. Warnings (fallback, silent audio) are logged and returned in ``AudioFeatures.notes``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from synctalk_lib.audio import ave as ave_module
from synctalk_lib.audio.mel import MEL_FPS, SAMPLE_RATE, mel_spectrogram, num_mel_frames, to_mono_16k
from synctalk_lib.audio.windows import WINDOW, frame_count, gather_windows, window_starts
from synctalk_lib.errors import InputError, MissingWeightsError
from synctalk_lib.types import AudioFeatures

log = logging.getLogger("synctalk")

MEL_ENCODER_ID = "mel-v1"
MEL_FEATURE_DIM = 80 * WINDOW
SILENCE_PEAK = 10 ** (-70 / 20)
"""Peak amplitude below which audio counts as silent (-70 dBFS)."""
ENCODER_CHOICES = ("auto", "ave", "ave-file", "mel")
AVE_BATCH = 64
"""Windows per AVE forward pass (as the original; larger batches were no faster on CPU)."""


def encode_audio(wave: np.ndarray, sample_rate: int, *, fps: float = 25.0, encoder: str = "auto",
                 models_dirs: Iterable[Path | str] | None = None, device: torch.device | str = "cpu",
                 on_step: Callable[[int, int], None] | None = None) -> AudioFeatures:
    """Audio features for every video frame the audio covers.

    Args:
        wave: ``[C, T]`` float audio (any channel count; ``[T]`` is taken as mono), numpy or torch.
        sample_rate: Hz, any (resampled to 16 kHz here).
        fps: video frame rate the rows are aligned to.
        encoder: ``"auto"``, ``"ave"``, ``"ave-file:<path>"`` or ``"mel"`` (see the module docstring).
        models_dirs: models folders for the AVE weights (``None``: the default folder).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a torch device.
        on_step: ``on_step(done, total)`` progress callback.

    Returns:
        ``AudioFeatures`` with ``features`` ``[N, D]`` float32 (D = 512 for the AVE, 1280 for mel).

    Raises:
        InputError: empty, non-finite or too short audio; bad settings; an unreadable ``ave-file``.
        MissingWeightsError: ``encoder="ave"`` and the official weights are neither present nor downloadable.
    """
    kind, path = parse_encoder(encoder)
    fps = _check_fps(fps)
    dev = _device(device)
    notes: list[str] = []
    mono = _mono_16k(wave, sample_rate, dev)
    total_mel = num_mel_frames(mono.numel())
    if total_mel < WINDOW:
        raise InputError(f"the audio lasts {mono.numel() / SAMPLE_RATE * 1000:.0f} ms, shorter than one "
                         f"{WINDOW / MEL_FPS * 1000:.0f} ms window of the audio encoder; give at least "
                         f"{(WINDOW - 1) * 200 / SAMPLE_RATE * 1000:.0f} ms of audio.")
    rows = frame_count(mono.numel(), SAMPLE_RATE, fps)
    if rows < 1:
        raise InputError(f"the audio ({mono.numel() / SAMPLE_RATE:.3f} s) covers no video frame at {fps:g} fps")
    peak = float(mono.abs().max())
    if peak < SILENCE_PEAK:
        notes.append(f"the audio is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS): the features carry no "
                     "speech, so the mouth will not move")

    model = None
    if kind in ("ave", "auto"):
        try:
            model = ave_module.load_ave(None, models_dirs, dev)
        except MissingWeightsError as exc:
            if kind == "ave":
                raise MissingWeightsError(f"{exc} Or choose the encoder 'mel', which needs no weights (render "
                                          "with the encoder the model was trained with).") from exc
            notes.append(f"the official AVE weights are unavailable, so the 'mel' features are used instead "
                         f"(D = {MEL_FEATURE_DIM}; lip sync is learnt by the renderer alone, usually weaker). "
                         f"Details: {exc}")
    elif kind == "ave-file":
        model = ave_module.load_ave(path, models_dirs, dev)

    mel = mel_spectrogram(mono)
    windows = gather_windows(mel, window_starts(rows, mel.shape[0], fps))  # [N, 80, 16]
    batches = -(-rows // AVE_BATCH) if model is not None else 0
    if on_step is not None:
        on_step(1, 1 + batches)
    if model is None:
        features = windows.reshape(rows, MEL_FEATURE_DIM).cpu()
        encoder_id = MEL_ENCODER_ID
    else:
        def batch_done(done: int, _total: int) -> None:
            if on_step is not None:
                on_step(1 + -(-done // AVE_BATCH), 1 + batches)

        features = ave_module.encode_windows(model, windows, batch_size=AVE_BATCH, on_step=batch_done)
        encoder_id = model.weights_id
    for note in notes:
        _warn_once(note)
    return AudioFeatures(features=np.ascontiguousarray(features.numpy(), dtype=np.float32), fps=float(fps),
                         encoder_id=encoder_id, notes=tuple(notes))


_WARNED: set[str] = set()


def _warn_once(note: str) -> None:
    """Log a note the first time this process meets it (the fallback to mel would otherwise repeat for every
    EncodeAudioAV of every run); the features keep their notes, so reports still show them each time."""
    if note not in _WARNED:
        _WARNED.add(note)
        log.warning("SyncTalk: %s", note)


def parse_encoder(encoder: str) -> tuple[str, str | None]:
    """``"ave-file:/x.safetensors"`` -> ``("ave-file", "/x.safetensors")``; ``"mel"`` -> ``("mel", None)``."""
    name, _, path = str(encoder).partition(":")
    name = name.strip().lower()
    if name not in ENCODER_CHOICES:
        raise InputError(f"unknown audio encoder {encoder!r}; choose auto, ave, ave-file:<path> or mel")
    if name == "ave-file":
        if not path.strip():
            raise InputError("the 'ave-file' encoder needs a weights file: ave-file:<path to .safetensors/.pth>")
        return name, path.strip()
    if path:
        raise InputError(f"audio encoder {encoder!r}: only ave-file takes a path (ave-file:<path>)")
    return name, None


def encoder_for(encoder_id: str, override: str | None = None) -> str:
    """The ``encode_audio`` encoder that reproduces features with ``encoder_id`` (``override`` wins)."""
    if override:
        return override
    if encoder_id.startswith("mel"):
        return "mel"
    if encoder_id.startswith("ave-file"):
        raise InputError(f"the model was trained on features of an AVE weights file ({encoder_id}); pass the "
                         "encoder explicitly: ave-file:<that file>")
    if encoder_id.startswith("ave"):
        return "ave"
    raise InputError(f"unknown audio encoder id {encoder_id!r}; encode the speech with the encoder the model "
                     "was trained with")


def _check_fps(fps: float) -> float:
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        raise InputError(f"fps must be a positive frame rate (got {fps})")
    return fps


def _device(device: torch.device | str) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was chosen but torch sees no CUDA GPU; choose 'auto' or 'cpu'")
    return torch.device(device)


def _mono_16k(wave: np.ndarray | torch.Tensor, sample_rate: int, device: torch.device) -> torch.Tensor:
    """Validate ``[C, T]`` audio and return mono 16 kHz ``[T16]`` float32 on ``device``."""
    data = wave.detach().cpu().float().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise InputError(f"audio must be [channels, samples], got shape {list(data.shape)}")
    if data.shape[1] == 0 or data.shape[0] == 0:
        raise InputError("the audio is empty (0 samples); connect or give a file with sound")
    if data.shape[0] > 16 and data.shape[1] <= 16:
        raise InputError(f"audio of shape {list(data.shape)} looks like [samples, channels]; "
                         "expected [channels, samples] (transpose it)")
    if not np.issubdtype(data.dtype, np.floating):
        raise InputError(f"audio samples must be float (-1..1), got {data.dtype}")
    if int(sample_rate) <= 0:
        raise InputError(f"the audio sample rate must be positive (got {sample_rate})")
    bad = ~np.isfinite(data)
    if bad.any():
        channel, sample = np.argwhere(bad)[0]
        raise InputError(f"the audio holds NaN/inf values (first at channel {channel}, sample {sample}, "
                         f"{sample / sample_rate:.3f} s); fix or re-export the file")
    tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).to(device)
    return to_mono_16k(tensor, int(sample_rate))
