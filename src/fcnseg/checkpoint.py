"""Model files: a net with its builder, settings and metadata, written atomically.

A file holds only tensors and plain Python values (str, int, float, bool, lists, dicts), so
it loads with ``torch.load(weights_only=True)``: an untrusted file cannot run code.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcnseg.models import BUILDERS

FORMAT = "fcnseg"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable fcnseg checkpoint; the message names the file."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file's contents with ``weights_only=True``, checking its format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise CheckpointError(f"{path} is not a torch checkpoint (not a zip archive; truncated?)")
    try:
        contents = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and unsafe-global errors all land here
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line}") from error
    if not isinstance(contents, dict) or contents.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an fcnseg checkpoint (no 'format': '{FORMAT}')")
    if contents.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {contents['version']}; this fcnseg reads <= {VERSION}"
        )
    for key in ("arch", "settings", "state_dict"):
        if key not in contents:
            raise CheckpointError(f"{path} lacks '{key}'")
    return contents


def model_record(model: nn.Module, **meta: Any) -> dict[str, Any]:
    """The checkpoint dictionary of a net built by one of :data:`fcnseg.models.BUILDERS`."""
    arch = getattr(model, "arch", None)
    if arch not in BUILDERS:
        raise ValueError(f"model has arch {arch!r}; only nets from {sorted(BUILDERS)} can be saved")
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "settings": dict(model.settings),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": {**getattr(model, "meta", {}), **meta},
    }


def build(
    contents: dict[str, Any], source: str = "checkpoint", geometry: str | None = None
) -> nn.Module:
    """Rebuild the net a checkpoint describes and load its weights.

    ``geometry`` ("reference" or "fast") rebuilds a VGG16 FCN in the other geometry: the same
    weights with or without conv1's 100-pixel padding (see :data:`fcnseg.models.GEOMETRIES`); an
    unknown one is an error naming ``source``.
    """
    arch = contents["arch"]
    if arch not in BUILDERS:
        raise CheckpointError(f"{source} names arch {arch!r}; known: {sorted(BUILDERS)}")
    settings = dict(contents["settings"])
    if geometry is not None:
        if "geometry" not in settings:
            raise CheckpointError(
                f"{source}: {arch} has no geometry choice (only the VGG16 FCNs have one)"
            )
        settings["geometry"] = geometry
    try:  # the builder checks the settings (ValueError), load_state_dict the shapes
        model = BUILDERS[arch](**settings)
        model.load_state_dict(contents["state_dict"])
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{source} does not fit {arch}: {error}") from error
    model.meta = dict(contents.get("meta", {}))
    return model


def save(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """Save ``model`` with its builder, settings and ``meta`` (e.g. ``classes``, ``palette``)."""
    return atomic_save(model_record(model, **meta), path)


def load(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", geometry: str | None = None
) -> nn.Module:
    """Load a net saved by :func:`save` (or a training checkpoint), in eval mode (call
    ``.train()`` to train it further); ``model.meta`` holds meta.

    ``geometry``: rebuild a VGG16 FCN in this geometry instead of its own (see :func:`build`).
    """
    return build(read(path, map_location), source=str(path), geometry=geometry).eval()
