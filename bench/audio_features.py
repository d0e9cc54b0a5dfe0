"""Audio features for the reference clip's 13.24 s track on CPU: shapes and time, AVE and mel.

    SYNCTALK_SHARED=/work/shared python bench/audio_features.py [--video PATH] [--threads N] [--repeat 5]

The AVE runs with random weights saved in the official checkpoint layout (the official file is not available
here; the time does not depend on the values). Prints, per encoder, the feature shape, the first-call time
(includes loading the weights) and the median of the following calls; plus the mel-vs-librosa difference when
librosa is installed. Target: under 2 s on CPU for the AVE.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synctalk_lib.audio.ave import AudioVisualEncoder  # noqa: E402
from synctalk_lib.audio.features import encode_audio  # noqa: E402
from synctalk_lib.audio.mel import mel_from_wave  # noqa: E402
from synctalk_lib.media.audio import load_audio  # noqa: E402


def time_encoder(wave: np.ndarray, rate: int, encoder: str, repeat: int) -> tuple[tuple[int, int], float, float]:
    started = time.perf_counter()
    features = encode_audio(wave, rate, fps=25.0, encoder=encoder)
    first = time.perf_counter() - started
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        encode_audio(wave, rate, fps=25.0, encoder=encoder)
        times.append(time.perf_counter() - started)
    return features.features.shape, first, statistics.median(times)


def librosa_difference(wave: np.ndarray, rate: int) -> float | None:
    try:
        import librosa
        from scipy.signal import lfilter
    except ImportError:
        return None
    y = lfilter([1.0, -0.97], [1.0], wave[0].astype(np.float32)).astype(np.float32)
    spec = np.abs(librosa.stft(y=y, n_fft=800, hop_length=200, win_length=800))
    mel = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600) @ spec
    ref = np.clip(8 * (20 * np.log10(np.maximum(1e-5, mel)) - 20 + 100) / 100 - 4, -4, 4).T
    return float(np.abs(mel_from_wave(wave, rate).numpy() - ref).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("SYNCTALK_SHARED", "../shared"))
    parser.add_argument("--video", type=Path, default=shared / "data" / "may_short.mp4")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    wave, rate = load_audio(args.video, duration=331 / 25)  # the clip's 331 frames at 25 fps
    print(f"audio: {wave.shape[1] / rate:.2f} s, {rate} Hz, {wave.shape[0]} channel(s); "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        weights = Path(tmp) / "random_ave.safetensors"
        from safetensors.torch import save_file

        save_file(AudioVisualEncoder().official_state_dict(), str(weights))
        for label, encoder in (("ave (random weights, official layout)", f"ave-file:{weights}"), ("mel", "mel")):
            shape, first, median = time_encoder(wave, rate, encoder, args.repeat)
            print(f"{label:40s} shape {list(shape)}  first call {first:.3f} s  median of {args.repeat} "
                  f"{median:.3f} s")
    diff = librosa_difference(wave, rate)
    if diff is not None:
        print(f"mel vs librosa (float32 reference): max |diff| = {diff:.2e}")


if __name__ == "__main__":
    main()
