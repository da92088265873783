"""Model files: a net with its builder, config and metadata, written atomically.

A file holds only tensors and plain Python values (str, int, float, bool, lists, dicts), so
it loads with ``torch.load(weights_only=True)``: an untrusted file cannot run code. Its keys:
``arch`` (a name of :func:`fcnseg.models.list_models`), ``settings`` (the net's config as a
dict), ``state_dict``, ``meta`` (:class:`fcnseg.metadata.Metadata` as a dict) and, in
training checkpoints, ``training``. Every weight file fcnseg reads (checkpoints, VGG16
state dicts) goes through :func:`read_weights`, which verifies every member of the zip archive
against its CRC-32 (a damaged byte is found, not loaded); reading a checkpoint also refuses
NaN or inf weights, naming the tensor. Files are written through a temporary file and a rename,
with the permissions the umask gives (0644 under the usual 022), and a full disk raises
:class:`~fcnseg.errors.DiskFullError` after removing the temporary file.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcnseg.data.transforms import ConcatNormalize, normalizer_from_spec
from fcnseg.errors import DiskFullError, is_disk_full
from fcnseg.metadata import Metadata, MetadataError, metadata_of
from fcnseg.models import get_builder, list_models, settings_of
from fcnseg.models.ensemble import ARCH as ENSEMBLE
from fcnseg.models.ensemble import Ensemble
from fcnseg.safe_files import umask_mode
from fcnseg.weights_io import WeightsFileError, read_weights

FORMAT = "fcnseg"
VERSION = 1


class CheckpointError(WeightsFileError):
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


def is_checkpoint(contents: Any) -> bool:
    """Whether ``contents`` (what :func:`read_weights` returned) is an fcnseg checkpoint."""
    return isinstance(contents, dict) and contents.get("format") == FORMAT


def read(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file's contents with ``weights_only=True``, checking its format."""
    try:
        contents = read_weights(path, map_location, what="checkpoint")
    except WeightsFileError as error:
        raise CheckpointError(str(error)) from error
    if not is_checkpoint(contents):
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
    """The checkpoint dictionary of a net made by a builder of :func:`fcnseg.models.list_models`,
    or of an :class:`~fcnseg.models.ensemble.Ensemble` of such nets (arch ``"ensemble"``,
    settings ``{"members": [{"arch", "settings"}, ...]}``); ``meta`` updates the net's own
    metadata (fields of :class:`~fcnseg.metadata.Metadata`, or other plain values)."""
    arch = getattr(model, "arch", None)
    if isinstance(model, Ensemble):
        settings: dict[str, Any] = model.settings()
    elif arch in list_models():
        settings = settings_of(model)
    else:
        raise ValueError(
            f"model has arch {arch!r}; only nets from {list_models()} and ensembles of them "
            "can be saved"
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "settings": settings,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": metadata_of(model).updated(**meta).to_dict(),
    }


def build(
    contents: dict[str, Any], source: str = "checkpoint", geometry: str | None = None
) -> nn.Module:
    """Rebuild the net a checkpoint describes, load its weights and set its ``metadata``.

    ``geometry`` ("reference" or "fast") rebuilds a VGG16 FCN in the other geometry: the same
    weights with or without conv1's 100-pixel padding (see :data:`fcnseg.models.GEOMETRIES`); an
    unknown one is an error naming ``source``.
    """
    arch = contents["arch"]
    if arch == ENSEMBLE:
        model = _build_ensemble(contents, source, geometry)
    else:
        model = _build_net(arch, contents["settings"], source, geometry)
    try:  # load_state_dict checks the shapes
        model.load_state_dict(contents["state_dict"])
        model.metadata = Metadata.from_dict(contents.get("meta") or {})
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{source} does not fit {arch}: {error}") from error
    return model


def _build_net(
    arch: Any, settings: Any, source: str, geometry: str | None, who: str = ""
) -> nn.Module:
    """The net of a builder's name and settings (untrained); ``who`` names an ensemble member."""
    if arch not in list_models():
        raise CheckpointError(f"{source}{who} names arch {arch!r}; known: {list_models()}")
    if not isinstance(settings, dict):
        raise CheckpointError(f"{source}{who}: settings must be a dict, got {type(settings)}")
    builder = get_builder(arch)
    settings = dict(settings)
    if geometry is not None:
        if "geometry" not in settings and not hasattr(builder.config_class, "geometry"):
            raise CheckpointError(
                f"{source}{who}: {arch} has no geometry choice (only the VGG16 FCNs have one)"
            )
        settings["geometry"] = geometry
    try:  # the config checks the settings
        return builder.from_settings(settings)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}{who} does not fit {arch}: {error}") from error


def _build_ensemble(contents: dict[str, Any], source: str, geometry: str | None) -> Ensemble:
    settings = contents["settings"]
    members = settings.get("members") if isinstance(settings, dict) else None
    if not isinstance(members, list) or not members:
        raise CheckpointError(f"{source}: an ensemble's settings must list its 'members'")
    nets = []
    for index, member in enumerate(members):
        who = f" (member {index})"
        if not isinstance(member, dict):
            raise CheckpointError(f"{source}{who}: expected {{'arch', 'settings'}}")
        nets.append(_build_net(member.get("arch"), member.get("settings"), source, geometry, who))
    split_input = settings.get("split_input", False)
    if not isinstance(split_input, bool):
        raise CheckpointError(f"{source}: split_input must be true or false, got {split_input!r}")
    try:
        return Ensemble(nets, split_input=split_input)
    except ValueError as error:
        raise CheckpointError(f"{source}: {error}") from error


def save(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """Save ``model`` with its builder, config and metadata, updated by ``meta`` (e.g.
    ``classes``, ``palette``: see :class:`~fcnseg.metadata.Metadata`)."""
    try:
        record = model_record(model, **meta)
    except MetadataError as error:
        raise CheckpointError(f"cannot save {path}: {error}") from error
    return atomic_save(record, path)


def load(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", geometry: str | None = None
) -> nn.Module:
    """Load a net saved by :func:`save` (or a training checkpoint), in eval mode (call
    ``.train()`` to train it further).

    The net's metadata: :func:`fcnseg.metadata_of`. ``geometry``: rebuild a VGG16 FCN in this
    geometry instead of its own (see :func:`build`).
    """
    return build(read(path, map_location), source=str(path), geometry=geometry).eval()


# What the members of an ensemble must agree on: the input size they see, the meaning of scores.
SHARED_METADATA = ("input_scale", "classes")


def ensemble(
    paths: Sequence[str | os.PathLike], map_location: str | torch.device = "cpu"
) -> Ensemble:
    """The :class:`~fcnseg.models.ensemble.Ensemble` of the nets saved in ``paths`` (two or
    more), in eval mode, to score or :func:`save` as one net.

    The members must see images at the same input scale and score the same classes
    (:data:`SHARED_METADATA`); a file that differs is an error naming it. Members recorded with
    the same preprocessing share the input; members with different ones get a split input,
    whose preprocessing is a :class:`~fcnseg.data.transforms.ConcatNormalize` of theirs, so
    each is scored on exactly the input it was trained on. The ensemble's metadata is otherwise
    the first file's (its palette, test-time augmentation...), with ``ensemble_of``: the files'
    names.
    """
    if len(paths) < 2:
        raise CheckpointError(f"an ensemble needs two or more checkpoints, got {len(paths)}")
    nets = [load(path, map_location) for path in paths]
    for path, net in zip(paths, nets):
        if isinstance(net, Ensemble):
            members = ", ".join(map(str, metadata_of(net).extra.get("ensemble_of") or []))
            raise CheckpointError(
                f"{path} is an ensemble already; give the checkpoints of its members "
                f"({members or 'not recorded'})"
            )
    first = metadata_of(nets[0])
    for path, net in zip(paths[1:], nets[1:]):
        for field in SHARED_METADATA:
            if getattr(metadata_of(net), field) != getattr(first, field):
                raise CheckpointError(
                    f"{path} has {field} {getattr(metadata_of(net), field)!r}, {paths[0]} has "
                    f"{getattr(first, field)!r}: an ensemble's members share their input size "
                    "and classes"
                )
    specs = [metadata_of(net).preprocessing for net in nets]
    split_input = any(spec != specs[0] for spec in specs)
    preprocessing = _split_preprocessing(paths, specs) if split_input else first.preprocessing
    try:
        model = Ensemble(nets, split_input=split_input)
    except ValueError as error:
        raise CheckpointError(f"{', '.join(map(str, paths))}: {error}") from error
    model.metadata = first.updated(
        preprocessing=preprocessing, ensemble_of=[Path(p).name for p in paths]
    )
    return model.eval()


def _split_preprocessing(
    paths: Sequence[str | os.PathLike], specs: list[dict[str, Any] | None]
) -> dict[str, Any]:
    """The spec of a :class:`~fcnseg.data.transforms.ConcatNormalize` of the members'
    preprocessing; each must record one that rebuilds."""
    parts = []
    for path, spec in zip(paths, specs):
        if spec is None:
            raise CheckpointError(
                f"{path} records no preprocessing, and the members' preprocessing differ: "
                "each member of a split-input ensemble needs its own"
            )
        try:
            parts.append(normalizer_from_spec(spec))
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: preprocessing {spec!r}: {error}") from error
    return ConcatNormalize(parts).spec()
