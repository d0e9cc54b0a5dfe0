"""RAFT-small optical flow (Teed & Deng, ECCV 2020), written from the paper's description of the small model.

Only the parameter names and shapes follow the princeton-vl release, so its ``raft-small.pth`` (Hub asset
``raft_small``, BSD-3-Clause) loads with ``strict=True`` (the release was saved from ``nn.DataParallel``; its
``module.`` prefix is removed). The small model:

- feature encoder (instance norm) and context encoder (no norm): a 7x7 stride-2 convolution to 32 channels, three
  stages of two bottleneck residual blocks (32, 64, 96 channels; stride 1, 2, 2), a 1x1 projection -- 128 feature
  channels, and 96 + 64 context channels (GRU hidden state via tanh, GRU input via ReLU). Output at 1/8 size.
- 4-level all-pairs correlation pyramid (dot products / sqrt(channels), average-pooled), looked up in a 7x7
  window (radius 3) around the current estimate: 4 * 49 = 196 channels.
- update block: motion encoder (1x1 conv on correlation -> 96; 7x7 and 3x3 convs on the flow -> 64 -> 32; 3x3
  conv -> 80, plus the flow itself), a convolutional GRU (3x3 gates, hidden 96), a flow head (3x3 -> 128 -> 2).
- the 1/8 flow is upsampled to full size bilinearly (x 8); inputs are RGB scaled from 0..255 to -1..1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synctalk_lib import hub

CORRELATION_LEVELS = 4
CORRELATION_RADIUS = 3
HIDDEN_DIM = 96
CONTEXT_DIM = 64
MIN_SIDE = 128
"""Inputs are padded to at least this size (the 1/64-scale correlation level then has 2+ cells)."""


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 residual block with a 1x1 projection shortcut when the stride is not 1."""

    def __init__(self, in_planes: int, planes: int, norm: str, stride: int = 1):
        super().__init__()
        mid = planes // 4
        self.conv1 = nn.Conv2d(in_planes, mid, kernel_size=1)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(mid, planes, kernel_size=1)
        self.norm1, self.norm2, self.norm3 = _norm(norm, mid), _norm(norm, mid), _norm(norm, planes)
        self.downsample = (nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride),
                                         _norm(norm, planes)) if stride != 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = F.relu(self.norm3(self.conv3(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    return nn.Identity()


class SmallEncoder(nn.Module):
    """Image [B, 3, H, W] -> features [B, output_dim, H/8, W/8]."""

    def __init__(self, output_dim: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=7, stride=2, padding=3)
        self.norm1 = _norm(norm, 32)
        self.layer1 = nn.Sequential(BottleneckBlock(32, 32, norm, 1), BottleneckBlock(32, 32, norm, 1))
        self.layer2 = nn.Sequential(BottleneckBlock(32, 64, norm, 2), BottleneckBlock(64, 64, norm, 1))
        self.layer3 = nn.Sequential(BottleneckBlock(64, 96, norm, 2), BottleneckBlock(96, 96, norm, 1))
        self.conv2 = nn.Conv2d(96, output_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class SmallMotionEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        planes = CORRELATION_LEVELS * (2 * CORRELATION_RADIUS + 1) ** 2
        self.convc1 = nn.Conv2d(planes, 96, kernel_size=1)
        self.convf1 = nn.Conv2d(2, 64, kernel_size=7, padding=3)
        self.convf2 = nn.Conv2d(64, 32, kernel_size=3, padding=1)
        self.conv = nn.Conv2d(128, 80, kernel_size=3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        c = F.relu(self.convc1(corr))
        f = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([c, f], 1))), flow], 1)  # 82 channels


class ConvGRU(nn.Module):
    def __init__(self, hidden: int, inputs: int):
        super().__init__()
        self.convz = nn.Conv2d(hidden + inputs, hidden, kernel_size=3, padding=1)
        self.convr = nn.Conv2d(hidden + inputs, hidden, kernel_size=3, padding=1)
        self.convq = nn.Conv2d(hidden + inputs, hidden, kernel_size=3, padding=1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([h, x], 1)
        z = torch.sigmoid(self.convz(hx))
        r = torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q


class FlowHead(nn.Module):
    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, hidden, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(hidden, 2, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class SmallUpdateBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = SmallMotionEncoder()
        self.gru = ConvGRU(HIDDEN_DIM, 82 + CONTEXT_DIM)
        self.flow_head = FlowHead(HIDDEN_DIM, 128)

    def forward(self, net, inp, corr, flow):
        net = self.gru(net, torch.cat([inp, self.encoder(flow, corr)], 1))
        return net, self.flow_head(net)


class CorrelationPyramid:
    """All-pairs correlation of two feature maps, pooled into levels, sampled around given coordinates."""

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor):
        b, c, h, w = fmap1.shape
        corr = torch.einsum("bci,bcj->bij", fmap1.flatten(2), fmap2.flatten(2)) / c ** 0.5
        corr = corr.reshape(b * h * w, 1, h, w)
        self.levels = [corr]
        for _ in range(CORRELATION_LEVELS - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.levels.append(corr)
        r = CORRELATION_RADIUS
        d = torch.linspace(-r, r, 2 * r + 1, device=fmap1.device, dtype=fmap1.dtype)
        # Window offsets as the release orders them: the first axis of the 7x7 window moves x, the second y.
        self.delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), -1).reshape(1, 2 * r + 1, 2 * r + 1, 2)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        b, _, h, w = coords.shape
        centre = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
        out = []
        for i, corr in enumerate(self.levels):
            xy = centre / 2 ** i + self.delta
            hl, wl = corr.shape[-2:]
            grid = torch.stack([2 * xy[..., 0] / max(wl - 1, 1) - 1, 2 * xy[..., 1] / max(hl - 1, 1) - 1], -1)
            sampled = F.grid_sample(corr, grid, align_corners=True)  # [BHW, 1, 7, 7]
            out.append(sampled.reshape(b, h, w, -1))
        return torch.cat(out, -1).permute(0, 3, 1, 2).contiguous()


class RAFTSmall(nn.Module):
    """RAFT-small; ``forward(image1, image2)`` -> flow [B, 2, H, W] in pixels (dx, dy) from image1 to image2."""

    def __init__(self):
        super().__init__()
        self.fnet = SmallEncoder(128, "instance")
        self.cnet = SmallEncoder(HIDDEN_DIM + CONTEXT_DIM, "none")
        self.update_block = SmallUpdateBlock()

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 12) -> torch.Tensor:
        """Args: image1, image2: [B, 3, H, W] RGB 0..255 with H, W multiples of 8."""
        image1 = 2 * (image1 / 255.0) - 1.0
        image2 = 2 * (image2 / 255.0) - 1.0
        fmaps = self.fnet(torch.cat([image1, image2], 0)).float()
        fmap1, fmap2 = fmaps.chunk(2, 0)
        corr_fn = CorrelationPyramid(fmap1, fmap2)
        net, inp = self.cnet(image1).split([HIDDEN_DIM, CONTEXT_DIM], 1)
        net, inp = torch.tanh(net), F.relu(inp)
        b, _, h, w = fmap1.shape
        ys, xs = torch.meshgrid(torch.arange(h, device=image1.device, dtype=image1.dtype),
                                torch.arange(w, device=image1.device, dtype=image1.dtype), indexing="ij")
        coords0 = torch.stack([xs, ys], 0)[None].expand(b, -1, -1, -1)
        coords1 = coords0.clone()
        for _ in range(iters):
            corr = corr_fn(coords1)
            net, delta = self.update_block(net, inp, corr, coords1 - coords0)
            coords1 = coords1 + delta
        flow = coords1 - coords0
        return 8 * F.interpolate(flow, scale_factor=8, mode="bilinear", align_corners=True)


def load_raft_small(models_dirs: Iterable[Path | str] | None = None, *, device="cpu") -> RAFTSmall:
    """RAFT-small with the released weights (Hub asset ``raft_small``), in eval mode on ``device``."""
    state = hub.load_state_dict(hub.fetch("raft_small", models_dirs))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = RAFTSmall()
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


def estimate_flow(model: RAFTSmall, images1: np.ndarray, images2: np.ndarray, *, max_side: int = 320,
                  iters: int = 12, device="cpu") -> np.ndarray:
    """Flow from ``images1`` to ``images2`` ([B, H, W, 3] uint8) in their own pixels, [B, H, W, 2] float32.

    The images are scaled so the longer side is at most ``max_side``, padded (edge replicate) to multiples of 8
    and at least ``MIN_SIDE``, and the flow is scaled back.
    """
    h, w = images1.shape[1:3]
    scale = min(1.0, max_side / max(h, w))
    sh, sw = max(8, int(round(h * scale))), max(8, int(round(w * scale)))
    # Multiples of 8, and at least MIN_SIDE so the coarsest correlation level keeps more than one cell.
    ph, pw = max((-sh) % 8, MIN_SIDE - sh), max((-sw) % 8, MIN_SIDE - sw)
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)

    def prepare(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
        if (sh, sw) != (h, w):
            x = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False)
        return F.pad(x, pad, mode="replicate")

    with torch.inference_mode():
        flow = model(prepare(images1), prepare(images2), iters=iters)
        flow = flow[:, :, pad[2]:pad[2] + sh, pad[0]:pad[0] + sw]
        if (sh, sw) != (h, w):
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = flow * torch.tensor([w / sw, h / sh], device=flow.device, dtype=flow.dtype)[None, :, None, None]
    return flow.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
