"""Which torch device a stage runs on: one rule for the CLI, the pipeline, the nodes' fallback and the stages."""
from __future__ import annotations

from typing import Any

from synctalk_lib.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: Any = "auto"):
    """A ``torch.device`` for ``"auto" | "cpu" | "cuda" | "cuda:N"`` or a ``torch.device``; auto prefers CUDA.

    Raises:
        InputError: CUDA was asked for but torch sees no CUDA GPU (a silent CPU fallback would hide a broken
            driver behind a 100x slower run).
    """
    import torch

    if isinstance(choice, torch.device):
        return choice
    text = str(choice or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {choice!r} was chosen but torch sees no CUDA GPU here; choose 'auto' or 'cpu'")
    try:
        return torch.device(text)
    except RuntimeError as exc:
        raise InputError(f"unknown device {choice!r}; choose one of {', '.join(DEVICE_CHOICES)}") from exc
