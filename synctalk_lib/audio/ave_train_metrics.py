"""Metrics of AVE pre-training: synced vs shifted pair masks, the ROC AUC, and the scores of a split."""
from __future__ import annotations

import numpy as np
import torch

from synctalk_lib.audio.ave import AudioVisualEncoder
from synctalk_lib.audio.ave_train_data import ClipSamples, normalise_face
from synctalk_lib.audio.ave_train_nets import FaceWindowEncoder, sync_probability

NEAR_SHIFT_EVAL = 7
"""Largest shift (frames) counted as "near" in the evaluation's ``auc_near``."""


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half): the ROC AUC."""
    pos, neg = np.asarray(positives, np.float64).ravel(), np.asarray(negatives, np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    scores = np.concatenate([pos, neg])
    values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1  # 1-based rank of the first member of each tie group
    ranks = (first_rank + (counts - 1) / 2.0)[inverse]  # tied scores share their average rank
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def pair_masks(clip_ids: np.ndarray, times: np.ndarray, min_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """``[B, B]`` masks over (audio i, face j): synced pairs (same frame) and out-of-sync pairs."""
    same_clip = clip_ids[:, None] == clip_ids[None, :]
    shift = np.abs(times[:, None] - times[None, :])
    synced = same_clip & (shift == 0)
    shifted = ~same_clip | (shift >= min_shift)
    return synced, shifted


@torch.no_grad()
def sync_scores(ave: AudioVisualEncoder, face_encoder: FaceWindowEncoder, data: list[ClipSamples], split: str,
                device: torch.device, min_shift: int = 3, batch_size: int = 64) -> dict:
    """Synced vs shifted scores on every usable frame of ``split`` (``"train"`` or ``"val"``), eval mode.

    Returns:
        ``{"auc", "auc_near", "synced_mean", "shifted_mean", "frames", "pairs"}``: ``auc`` over every shifted pair
        (at least ``min_shift`` frames apart), ``auc_near`` over shifts of ``min_shift``..7 frames only (the hard
        part: same speaker, same head pose, audio 120-280 ms off); NaN without frames.
    """
    was_training = ave.training, face_encoder.training
    ave.eval()
    face_encoder.eval()
    audio_codes, face_codes, ids, times = [], [], [], []
    for c, d in enumerate(data):
        rng = d.train_range if split == "train" else d.val_range
        frames = d.frames_in(rng)
        for start in range(0, len(frames), batch_size):
            chunk = frames[start:start + batch_size]
            window = torch.from_numpy(d.face_window(chunk, rng))
            audio_codes.append(ave(d.audio[chunk][:, None].to(device)).float().cpu())
            face_codes.append(face_encoder(normalise_face(d.crops[window]).to(device)).float().cpu())
            ids.append(np.full(len(chunk), c))
            times.append(chunk)
    ave.train(was_training[0])
    face_encoder.train(was_training[1])
    if not audio_codes:
        nan = float("nan")
        return {"auc": nan, "auc_near": nan, "synced_mean": nan, "shifted_mean": nan, "frames": 0, "pairs": 0}
    prob = sync_probability(torch.cat(audio_codes), torch.cat(face_codes)).numpy()
    ids_all, times_all = np.concatenate(ids), np.concatenate(times)
    synced, shifted = pair_masks(ids_all, times_all, min_shift)
    shift = np.abs(times_all[:, None] - times_all[None, :])
    near = shifted & (ids_all[:, None] == ids_all[None, :]) & (shift <= NEAR_SHIFT_EVAL)
    pos, neg = prob[synced], prob[shifted]
    return {"auc": roc_auc(pos, neg), "auc_near": roc_auc(pos, prob[near]), "synced_mean": float(pos.mean()),
            "shifted_mean": float(neg.mean()), "frames": int(len(pos)), "pairs": int(len(neg))}
