"""Device choice for torch code: one spelling of "auto" | "cuda" | "cuda:N" | "cpu" everywhere."""

from __future__ import annotations

import os
import shutil

DEVICE_CHOICES = ("auto", "cuda", "cpu")
"""Device names a user may pass (plus "cuda:N")."""


class DeviceError(ValueError):
    """A device name that is not known, or CUDA asked for where there is none."""


def check_device_name(name: str) -> str:
    """``name`` if it is a device a user may ask for, else DeviceError (no torch import)."""
    if name in DEVICE_CHOICES or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise DeviceError(f"unknown device {name!r}; use auto, cuda, cuda:N or cpu")


def resolve_device(name: str):
    """The torch.device for ``name``: "auto" is CUDA when available, else CPU.

    DeviceError for an unknown name or for CUDA asked for on a machine without it.
    """
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for but CUDA is not available")
    return torch.device(name)


def cuda_device_count() -> int:
    """Number of CUDA devices, without importing torch on machines that plainly have none."""
    if not (shutil.which("nvidia-smi") or os.path.exists("/dev/nvidia0")):
        return 0
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # a broken driver is "no GPU" here; the GPU stage says more
        return 0
