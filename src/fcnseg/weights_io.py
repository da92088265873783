"""The one reader of weight files: ``torch.load(weights_only=True)`` with errors naming the file.

fcnseg reads two kinds of weight file, both through :func:`read_weights`: its own checkpoints
(:mod:`fcnseg.checkpoint`) and foreign state dicts such as a torchvision VGG16
(:mod:`fcnseg.models.surgery`). ``weights_only=True`` unpickles tensors and plain values
only, so an untrusted file cannot run code.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from fcnseg.errors import FcnsegError

# torch.save's legacy (before torch 1.6) format, still that of published files such as
# torchvision's vgg16-397923af.pth: a protocol-2 pickle whose first value is this magic number.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


class WeightsFileError(FcnsegError):
    """A weight file that is missing or cannot be read; the message names it."""


def read_weights(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", what: str = "weights"
) -> Any:
    """The contents of ``path``, loaded with ``weights_only=True`` onto ``map_location``.

    ``what`` names the kind of file in messages ("checkpoint", "init weights", ...).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{what} {path} does not exist")
    if not _is_torch_file(path):
        raise WeightsFileError(
            f"{path} is not a torch {what} (not a zip archive nor torch's legacy format; "
            "truncated?)"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and unsafe-global errors all land here
        message = str(error).strip()
        first_line = message.splitlines()[0] if message else type(error).__name__
        raise WeightsFileError(f"cannot read {what} {path}: {first_line}") from error


def _is_torch_file(path: Path) -> bool:
    """Whether ``path`` is a zip archive (what torch.save writes) or in the legacy format."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as file:
        return file.read(len(LEGACY_MAGIC)) == LEGACY_MAGIC
