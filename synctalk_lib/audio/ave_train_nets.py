"""Networks of AVE pre-training (beside the AVE itself, ``audio.ave``): the face-window encoder ``E_F`` of the
lip-sync discriminator, and the reference encoder and mouth decoder of the audio-conditioned reconstruction.

See ``audio.ave_train`` for how they are trained together.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

FACE_FRAMES = 5
"""Mouth crops per face window: 200 ms at 25 fps, the span of one audio window."""


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    padding = kernel // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class FaceWindowEncoder(nn.Module):
    """``[B, 3 * 5, 64, 64]`` stacked mouth crops (normalised) -> ``[B, 512]`` non-negative code."""

    def __init__(self, frames: int = FACE_FRAMES):
        super().__init__()
        self.net = nn.Sequential(
            _conv(3 * frames, 32, 5, 2),                   # 32 x 32
            _conv(32, 64, 3, 2), _Residual(64),            # 16 x 16
            _conv(64, 128, 3, 2), _Residual(128),          # 8 x 8
            _conv(128, 256, 3, 2), _Residual(256),         # 4 x 4
            _conv(256, 512, 4, 1, 0),                      # 1 x 1
            nn.Conv2d(512, 512, 1), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ReferenceEncoder(nn.Module):
    """``[B, 3, 64, 64]`` reference crop -> skip features at 32, 16, 8 and 4 pixels (``Conv(F)``)."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([_conv(3, 16, 5, 2), _conv(16, 32, 3, 2), _conv(32, 64, 3, 2),
                                     _conv(64, 128, 3, 2)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class MouthDecoder(nn.Module):
    """``Conv(A)`` (AVE code ``[B, 512]`` -> ``[B, 128, 4, 4]``) + reference features -> ``[B, 3, 64, 64]`` in 0..1."""

    def __init__(self):
        super().__init__()
        self.audio = nn.Sequential(nn.Linear(512, 128 * 16), nn.ReLU(inplace=True))
        self.fuse = _conv(256, 128)
        self.up = nn.ModuleList([_conv(128 + 64, 64), _conv(64 + 32, 32), _conv(32 + 16, 16), _conv(16, 16)])
        self.out = nn.Conv2d(16, 3, 1)

    def forward(self, audio_code: torch.Tensor, ref: list[torch.Tensor]) -> torch.Tensor:
        x = self.audio(audio_code).view(-1, 128, 4, 4)
        x = self.fuse(torch.cat([x, ref[3]], 1))
        for stage, skip in zip(self.up, (ref[2], ref[1], ref[0], None)):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = stage(x if skip is None else torch.cat([x, skip], 1))
        return torch.sigmoid(self.out(x))


def sync_probability(audio_code: torch.Tensor, face_code: torch.Tensor) -> torch.Tensor:
    """``[B, 512]``, ``[B', 512]`` -> ``[B, B']`` cosine similarities (in [0, 1] for non-negative codes)."""
    a = F.normalize(audio_code, dim=1, eps=1e-6)
    v = F.normalize(face_code, dim=1, eps=1e-6)
    return (a @ v.T).clamp(1e-6, 1 - 1e-6)
