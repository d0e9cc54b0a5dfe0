"""Lip features from audio: a per-row MLP (``AudioNet``) and temporal attention over the window (``AudioAttNet``).

    net = AudioEncoder(in_dim=512, audio_dim=32, window=8)
    code = net(windows)               # [B, 8, 512] -> [B, 32]

Sizes and layer order follow the original (reference-synctalk.md 2.3), and so do the state-dict keys
(``audio_net.encoder_fc1.{0,2,4}``, ``audio_att_net.attentionConvNet.{0,2,4,6,8}``, ``audio_att_net.attentionNet.0``),
so official weights load unchanged.
"""
from __future__ import annotations

from torch import Tensor, nn

LEAKY_SLOPE = 0.02


class AudioNet(nn.Module):
    """Per-row MLP: in_dim -> 256 -> 128 -> audio_dim with LeakyReLU(0.02) between layers (biases on)."""

    def __init__(self, in_dim: int = 512, audio_dim: int = 32):
        super().__init__()
        self.audio_dim = audio_dim
        self.encoder_fc1 = nn.Sequential(
            nn.Linear(in_dim, 256), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Linear(256, 128), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Linear(128, audio_dim),
        )

    def get_out_dim(self) -> int:
        return self.audio_dim

    def forward(self, rows: Tensor) -> Tensor:
        """[..., in_dim] feature rows -> [..., audio_dim] codes."""
        return self.encoder_fc1(rows)


class AudioAttNet(nn.Module):
    """Temporal attention over a window of codes: 5 Conv1d (32->16->8->4->2->1, LeakyReLU after each), a Linear
    over the window and a softmax give one weight per row; the output is the weighted sum of the rows."""

    def __init__(self, audio_dim: int = 32, window: int = 8):
        super().__init__()
        widths = [audio_dim, 16, 8, 4, 2, 1]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv1d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=True),
                       nn.LeakyReLU(LEAKY_SLOPE)]
        self.attentionConvNet = nn.Sequential(*layers)
        self.attentionNet = nn.Sequential(nn.Linear(window, window, bias=True), nn.Softmax(dim=1))
        self.window = window

    def weights(self, codes: Tensor) -> Tensor:
        """[B, W, audio_dim] codes -> [B, W] attention weights (sum to 1)."""
        scores = self.attentionConvNet(codes.transpose(1, 2))  # [B, 1, W]
        return self.attentionNet(scores.flatten(1))

    def forward(self, codes: Tensor) -> Tensor:
        """[B, W, audio_dim] codes -> [B, audio_dim] smoothed code."""
        return (self.weights(codes).unsqueeze(-1) * codes).sum(dim=1)


class AudioEncoder(nn.Module):
    """Audio window -> lip code: ``AudioNet`` on every row, then ``AudioAttNet`` (or the centre row when
    smoothing is off). The centre row of a window of W is row W // 2 (frame i in i-4..i+3)."""

    def __init__(self, in_dim: int = 512, audio_dim: int = 32, window: int = 8, smoothing: bool = True):
        super().__init__()
        self.audio_net = AudioNet(in_dim, audio_dim)
        self.audio_att_net = AudioAttNet(audio_dim, window) if smoothing else None
        self.window = window

    def get_out_dim(self) -> int:
        return self.audio_net.get_out_dim()

    def forward(self, windows: Tensor) -> Tensor:
        """Encode windows.

        Args:
            windows: [B, W, in_dim] feature rows (W = window).

        Returns:
            [B, audio_dim] lip codes.
        """
        if windows.dim() != 3 or windows.shape[1] != self.window:
            raise ValueError(f"audio windows must be [B, {self.window}, D], got {tuple(windows.shape)}")
        if self.audio_att_net is None:
            return self.audio_net(windows[:, self.window // 2])
        return self.audio_att_net(self.audio_net(windows))
