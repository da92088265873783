"""Where and in what arithmetic a net runs: one spelling of devices and precisions.

Recipes (``device``, ``amp``) and the command line (``--device``, ``--precision``) both name
them here, so training, ``fcnseg eval`` and ``fcnseg predict`` read the same words the same way.
"""

from __future__ import annotations

import logging

import torch

from fcnseg.errors import FcnsegError

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
# Precision names: fp32 runs float32; the others run the net under autocast to that dtype.
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# Older spellings still read, each with its canonical name (recipes said "none" for fp32).
PRECISION_ALIASES = {"none": "fp32"}


class DeviceError(FcnsegError):
    """A device or precision that this machine or this name cannot give."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when available, else the CPU; ``cuda``: this process's GPU (by
    ``local_rank``), an error without CUDA; ``cpu`` (or any torch device string) as given."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "device 'cuda' was asked for, but torch sees no CUDA device; use cpu or auto"
            )
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}") from None


def canonical_precision(name: str) -> str:
    """``name`` in its one spelling (``fp32``, ``bf16``, ``fp16``); ``none`` is read as fp32."""
    name = PRECISION_ALIASES.get(name, name)
    if name not in PRECISIONS:
        valid = ", ".join([*PRECISIONS, *PRECISION_ALIASES])
        raise DeviceError(f"unknown precision {name!r}; use one of {valid}")
    return name


def precision_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of precision ``name`` on ``device`` (None: float32).

    fp16 autocast needs CUDA: on another device it is an error naming bf16 instead.
    """
    name = canonical_precision(name)
    if name == "fp16" and device.type != "cuda":
        raise DeviceError(f"precision fp16 needs a CUDA device, not {device}; use bf16 there")
    return PRECISIONS[name]


__all__ = [
    "DEVICES",
    "PRECISIONS",
    "PRECISION_ALIASES",
    "DeviceError",
    "canonical_precision",
    "precision_dtype",
    "resolve_device",
]
