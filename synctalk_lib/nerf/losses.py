"""Training losses of the head NeRF (reference-synctalk.md 9.4; paper Eq. 13).

Per ray ``r``: a photometric error ``l_r`` (L1 as in the official code, or MSE as in the paper / ER-NeRF) times
the ray's weight (higher on the lips), optionally re-weighted by the predicted uncertainty; plus

- the uncertainty regulariser (coarse stage): a Gaussian negative log-likelihood on face rays and a penalty on
  uncertainty elsewhere,
- the opacity entropy (pushes every ray to fully opaque or fully transparent),
- the attention-mask losses (``mask_mode="loss"``): audio attention pushed to 0 outside the lower face,
  expression attention pushed to 0 inside it,
- a perceptual term (LPIPS) on patches or on the lips square (fine stage).

All weights are parameters of :class:`LossWeights`; terms that ramp in use ``progress`` = step / stage steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from synctalk_lib.errors import InputError, MissingDependencyError, MissingWeightsError, SyncTalkError
from synctalk_lib.metrics.psnr import MAX_PSNR_DB, psnr_from_mse
from synctalk_lib.nerf.dataset import RayBatch
from synctalk_lib.nerf.renderer import RenderOutput

Photometric = Literal["l1", "mse"]
PerceptualFn = Callable[[Tensor, Tensor], Tensor]
"""(pred [B, 3, H, W], target [B, 3, H, W]) in 0..1 -> [B] or [] perceptual distance (pads small images itself)."""


@dataclass(frozen=True)
class LossWeights:
    """Weights of every loss term (defaults: the original's)."""

    photometric: Photometric = "l1"
    """Per-ray colour error: "l1" (official code) or "mse" (paper / ER-NeRF)."""
    uncertainty: float = 0.01
    """Weight of the uncertainty regulariser; 0 disables uncertainty weighting too."""
    entropy: float = 1e-4
    """Weight of the opacity entropy."""
    attention_mask: float = 1e-4
    """Weight of both attention-mask losses (only used with ``mask_mode="loss"``)."""
    lpips_patch: float = 0.1
    """Weight of LPIPS on random patches."""
    lpips_lips: float = 0.01
    """Weight of LPIPS on the lips square."""


def photometric_error(pred: Tensor, target: Tensor, kind: Photometric) -> Tensor:
    """Per-ray colour error ``[N]`` (mean over RGB) between ``[N, 3]`` tensors."""
    diff = pred - target
    if kind == "l1":
        return diff.abs().mean(dim=-1)
    if kind == "mse":
        return (diff * diff).mean(dim=-1)
    raise ValueError(f"photometric loss must be 'l1' or 'mse', got {kind!r}")


def opacity_entropy(alpha: Tensor) -> Tensor:
    """Mean binary entropy (bits) of the ray opacities ``[N]``."""
    a = alpha.clamp(1e-5, 1.0 - 1e-5)
    return (-a * torch.log2(a) - (1.0 - a) * torch.log2(1.0 - a)).mean()


def uncertainty_terms(per_ray: Tensor, out: RenderOutput, batch: RayBatch, progress: float,
                      weight: float) -> tuple[Tensor, Tensor]:
    """Uncertainty-weighted per-ray loss and the uncertainty regulariser (official stage 1).

    The weight of ray r moves from 1 to ``N softmax(U)_r`` as training progresses (clamped to [0, 10], mixed
    0.2 / 0.8 with 1), so hard rays count more; the regulariser fits U as a Gaussian scale on face rays
    (``beta = U + 1``) and keeps it small elsewhere.

    Returns:
        (re-weighted per-ray loss [N], regulariser [])
    """
    u = out.uncertainty
    n = u.shape[0]
    w = n * torch.softmax(u, dim=0).detach()
    scale = 0.2 + 0.8 * ((1.0 - progress) + progress * w).clamp(0.0, 10.0)
    beta = u + 1.0
    err = (out.rgb - batch.target).norm(dim=-1).detach()
    face = batch.face.to(u.dtype)
    nll = err / (2.0 * beta * beta) + torch.log(beta) ** 2 / 2.0
    reg = weight * progress * (face * nll + (1.0 - face) * u).mean()
    return per_ray * scale, reg


def attention_mask_terms(out: RenderOutput, batch: RayBatch, progress: float, weight: float) -> Tensor:
    """Audio attention pushed to 0 outside the lower face, expression attention pushed to 0 inside it."""
    lower = batch.lower_face.to(out.amb_aud.dtype)
    return weight * progress * ((out.amb_aud * (1.0 - lower)).mean() + (out.amb_eye * lower).mean())


def as_images(values: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Rays ``[B*H*W, 3]`` laid out as ``shape = (B, H, W)`` -> images ``[B, 3, H, W]``."""
    b, h, w = shape
    return values.reshape(b, h, w, 3).permute(0, 3, 1, 2)


def pad_to(images: Tensor, minimum: int = 32) -> Tensor:
    """Zero-pad ``[B, 3, H, W]`` symmetrically so both sides are at least ``minimum`` (LPIPS needs ~32 px)."""
    h, w = images.shape[-2:]
    ph = max(0, (minimum - h + 1) // 2)
    pw = max(0, (minimum - w + 1) // 2)
    if ph == 0 and pw == 0:
        return images
    return torch.nn.functional.pad(images, (pw, pw, ph, ph))


def total_loss(out: RenderOutput, batch: RayBatch, *, weights: LossWeights, progress: float, mask_mode: str,
               use_uncertainty: bool, perceptual: PerceptualFn | None = None,
               perceptual_weight: float = 0.0) -> tuple[Tensor, dict[str, float]]:
    """The training loss of one batch and its parts (floats, for logs).

    Args:
        out: the render of ``batch``'s rays.
        batch: rays with targets, weights and region flags.
        weights: loss weights.
        progress: 0..1 position in the stage (ramps the uncertainty and attention terms in).
        mask_mode: the model's mask mode; the attention-mask losses apply for "loss".
        use_uncertainty: apply the uncertainty weighting and regulariser.
        perceptual: LPIPS-like function for patch/lips batches (``batch.shape`` set), or None.
        perceptual_weight: its weight.
    """
    parts: dict[str, float] = {}
    per_ray = photometric_error(out.rgb, batch.target, weights.photometric) * batch.weight
    loss_terms = []
    if use_uncertainty and weights.uncertainty > 0:
        per_ray, reg = uncertainty_terms(per_ray, out, batch, progress, weights.uncertainty)
        loss_terms.append(reg)
        parts["uncertainty"] = float(reg.detach())
    photometric = per_ray.mean()
    parts["photometric"] = float(photometric.detach())
    loss_terms.append(photometric)
    if weights.entropy > 0:
        entropy = weights.entropy * opacity_entropy(out.alpha)
        loss_terms.append(entropy)
        parts["entropy"] = float(entropy.detach())
    if mask_mode == "loss" and weights.attention_mask > 0:
        att = attention_mask_terms(out, batch, progress, weights.attention_mask)
        loss_terms.append(att)
        parts["attention_mask"] = float(att.detach())
    if perceptual is not None and perceptual_weight > 0 and batch.shape is not None:
        pred = as_images(out.rgb, batch.shape)
        target = as_images(batch.target, batch.shape)
        lp = perceptual_weight * perceptual(pred, target).mean()
        loss_terms.append(lp)
        parts["lpips"] = float(lp.detach())
    total = torch.stack([t.reshape(()) for t in loss_terms]).sum()
    parts["total"] = float(total.detach())
    with torch.no_grad():
        mse = ((out.rgb - batch.target) ** 2).mean()
        parts["psnr"] = psnr_from_mse(mse, max_db=MAX_PSNR_DB)
    return total, parts


def load_perceptual(kind: str, device: torch.device | str, models_dirs=None) -> PerceptualFn | None:
    """The perceptual loss function for ``kind`` ("lpips" or "none").

    Raises:
        SyncTalkError: LPIPS was asked for but cannot be loaded (package or weights missing); the message says
            how to install it or to choose ``perceptual_loss="none"``.
    """
    if kind == "none":
        return None
    if kind != "lpips":
        raise ValueError(f"perceptual_loss must be 'lpips' or 'none', got {kind!r}")
    try:
        from synctalk_lib.metrics import lpips as lpips_module
    except ImportError as exc:
        raise SyncTalkError(
            "the fine stage needs LPIPS (synctalk_lib.metrics.lpips could not be imported: "
            f"{exc}); choose perceptual_loss='none' to train without it") from exc
    try:
        net = lpips_module.load_lpips("alex", models_dirs=models_dirs, device=device)
    except (MissingDependencyError, MissingWeightsError, InputError) as exc:
        raise SyncTalkError(
            f"the fine stage uses the LPIPS perceptual loss, which cannot be loaded here: {exc} -- get the weights, "
            "or choose perceptual_loss='none' (preset, node input or --perceptual-loss none) to train without it"
        ) from exc
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)

    def perceptual(pred: Tensor, target: Tensor) -> Tensor:
        # like the original: map to [-1, 1] first, so the padding of small lips squares is mid-grey
        return net(pad_to(pred * 2.0 - 1.0), pad_to(target * 2.0 - 1.0))

    return perceptual
