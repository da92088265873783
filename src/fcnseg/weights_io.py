"""The one reader of weight files: ``torch.load(weights_only=True)`` with errors naming the file.

fcnseg reads two kinds of weight file, both through :func:`read_weights`: its own checkpoints
(:mod:`fcnseg.checkpoint`) and foreign state dicts such as a torchvision VGG16
(:mod:`fcnseg.models.surgery`). ``weights_only=True`` unpickles tensors and plain values
only, so an untrusted file cannot run code, and every member of the zip archive is checked
against its CRC-32 first, so a damaged byte is found rather than loaded.
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
    if path.is_dir():
        last = path / "last.pt"
        hint = f" (the run's checkpoint is {last})" if last.is_file() else ""
        raise WeightsFileError(f"{what} {path} is a folder, not a file{hint}")
    if not path.is_file():
        raise WeightsFileError(f"{what} {path} does not exist")
    if zipfile.is_zipfile(path):  # what torch.save writes
        verify_zip(path)
    elif not _is_legacy(path):
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


def _is_legacy(path: Path) -> bool:
    """Whether ``path`` starts as torch.save's legacy format does (:data:`LEGACY_MAGIC`)."""
    with path.open("rb") as file:
        return file.read(len(LEGACY_MAGIC)) == LEGACY_MAGIC


def verify_zip(path: Path) -> None:
    """Every member of the archive against its CRC-32 (read once, in chunks)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise WeightsFileError(f"{path} is damaged: {error}") from None
    if bad is not None:
        raise WeightsFileError(
            f"{path} is damaged: member {bad} fails its CRC-32 check (the file was changed "
            "after it was written)"
        )
