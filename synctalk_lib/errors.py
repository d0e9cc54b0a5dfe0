"""Errors written for people: what was wrong, with which input, and what to do."""
from __future__ import annotations


class SyncTalkError(Exception):
    """Base class: a problem the user can fix (bad input, missing file or package). Shown verbatim."""


class InputError(SyncTalkError, ValueError):
    """An input (file, tensor, setting) is not what a stage expects."""


class MissingDependencyError(SyncTalkError, ImportError):
    """An optional package is needed for this feature."""

    def __init__(self, package: str, feature: str, pip_name: str | None = None):
        self.package = package
        super().__init__(
            f"{feature} needs the Python package '{package}', which is not installed. "
            f"Install it into the Python that runs ComfyUI: python -m pip install {pip_name or package}"
        )


class MissingWeightsError(SyncTalkError, FileNotFoundError):
    """A weights file is neither in the models folder nor downloadable."""


def require(module: str, feature: str, pip_name: str | None = None):
    """Import an optional package or raise an error naming the package and the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], feature, pip_name) from exc
