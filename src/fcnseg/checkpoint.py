"""Model files: a net with its builder, settings and metadata, written atomically.

A file holds only tensors and plain Python values (str, int, float, bool, lists, dicts), so
it loads with ``torch.load(weights_only=True)``: an untrusted file cannot run code. Reading
verifies the file: every member of the zip archive against its CRC-32 (a damaged byte is
found, not loaded), and every floating-point weight is finite (NaN or inf is refused, naming
the tensor). Files are written through a temporary file and a rename, with the permissions the
umask gives (0644 under the usual 022), and a full disk raises
:class:`~fcnseg.errors.DiskFullError` after removing the temporary file.
"""

from __future__ import annotations

import glob
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcnseg.errors import DiskFullError, FcnsegError, is_disk_full
from fcnseg.models import BUILDERS
from fcnseg.safe_files import umask_mode

FORMAT = "fcnseg"
VERSION = 1


class CheckpointError(FcnsegError):
    """A file that is not a readable fcnseg checkpoint; the message names the file."""


TMP_SUFFIX = ".tmp"  # temporary files are .<name>.<random>.tmp beside the file


def temporary_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files :func:`atomic_save` may have left beside ``path`` if killed."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*{TMP_SUFFIX}"))


def _disk_full(error: BaseException | None) -> bool:
    while error is not None:
        if is_disk_full(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a broken file.

    The file gets mode 0o666 less the umask. No space left (ENOSPC, or a quota): the temporary
    file is removed, ``path`` keeps its old contents, and :class:`DiskFullError` names it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, umask_mode())  # mkstemp makes it 0o600
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(error):
            kept = f"{path.name} is unchanged" if path.exists() else "nothing was written"
            raise DiskFullError(path, f"the temporary file was removed; {kept}") from error
        raise
    return path


def non_finite_tensor(state_dict: dict[str, Any]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, else None."""
    for name, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            if not bool(torch.isfinite(tensor).all()):
                return name
    return None


def _verify_zip(path: Path) -> None:
    """Every member of the archive against its CRC-32 (read once, in chunks)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise CheckpointError(f"{path} is damaged: {error}") from None
    if bad is not None:
        raise CheckpointError(
            f"{path} is damaged: member {bad} fails its CRC-32 check (the file was changed "
            "after it was written)"
        )


def read(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file's contents with ``weights_only=True``, checking its format."""
    path = Path(path)
    if path.is_dir():
        last = path / "last.pt"
        hint = f" (the run's checkpoint is {last})" if last.is_file() else ""
        raise CheckpointError(f"checkpoint {path} is a folder, not a file{hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise CheckpointError(f"{path} is not a torch checkpoint (not a zip archive; truncated?)")
    _verify_zip(path)
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
    if isinstance(contents["state_dict"], dict):
        bad = non_finite_tensor(contents["state_dict"])
        if bad is not None:
            raise CheckpointError(
                f"{path}: tensor {bad} holds NaN or inf values (a damaged or diverged checkpoint)"
            )
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
    """Load a net saved by :func:`save` (or a training checkpoint); ``model.meta`` holds meta.

    ``geometry``: rebuild a VGG16 FCN in this geometry instead of its own (see :func:`build`).
    """
    return build(read(path, map_location), source=str(path), geometry=geometry)
