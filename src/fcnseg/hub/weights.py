"""Named weights into nets: download, verify, convert once, and fill a model.

``apply_weights(model, weights=..., weights_backbone=...)`` is what the builders call
(``fcnseg.fcn8s(num_classes=21, weights="voc-fcn8s")``, ``weights_backbone="imagenet"``),
following torchvision's convention. A name is looked up in :mod:`fcnseg.hub.registry`; a path
works wherever a name does (an fcnseg checkpoint, a torchvision-format state dict or a
``.caffemodel``).

Cache layout (under :func:`~fcnseg.hub.download.cache_dir`)::

    weights/<file name>            the published file, as downloaded and verified
    weights/<file name>.sha256     its SHA-256, recorded at first download when none is published
    converted/<entry name>.pt      a caffemodel converted to an fcnseg checkpoint (once)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from fcnseg.hub import registry
from fcnseg.hub.download import (
    HubError,
    cache_dir,
    check_space,
    download,
    locked,
    recorded_sha256,
)
from fcnseg.hub.registry import WeightsEntry
from fcnseg.metadata import metadata_of
from fcnseg.models import settings_of
from fcnseg.weights_io import WeightsFileError, read_weights

logger = logging.getLogger(__name__)

IMAGENET = "imagenet"  # weights_backbone / init alias: the ImageNet entry of the net's backbone


class WeightsError(HubError):
    """Weights that do not fit the net they are asked to fill; the message names both."""


def raw_path(entry: WeightsEntry) -> Path:
    """Where the published file of ``entry`` lives in the cache."""
    return cache_dir() / "weights" / entry.file_name


def converted_path(entry: WeightsEntry) -> Path:
    """Where the fcnseg checkpoint converted from a caffemodel entry lives in the cache."""
    return cache_dir() / "converted" / f"{entry.name}.pt"


def fetch(entry: WeightsEntry, progress: bool = True) -> Path:
    """The entry's published file, downloaded and verified if not cached yet."""
    return download(entry.url, raw_path(entry), entry.checksum, entry.size, progress=progress)


def checksum_status(entry: WeightsEntry) -> str:
    """How the entry's file is (or will be) verified, for listings."""
    checksum = entry.checksum
    if checksum is not None:
        return checksum.describe()
    recorded = recorded_sha256(raw_path(entry))
    if recorded:
        return f"unverified: sha256 {recorded} recorded on first download"
    return registry.UNVERIFIED


def _convert(entry: WeightsEntry, source: Path, out: Path) -> Path:
    """A caffemodel entry as an fcnseg checkpoint (whole nets with their classes and mean)."""
    from fcnseg.interop.caffe_import import convert_caffemodel

    if entry.fills == "net":
        report = convert_caffemodel(
            source,
            out,
            head=entry.head,
            tower=entry.tower,
            dataset=entry.dataset,
            modality=entry.modality,
        )
        if report.arch != entry.arch or report.settings["num_classes"] != entry.num_classes:
            out.unlink(missing_ok=True)
            raise WeightsError(
                f"{entry.name}: {source} converts to {report.arch} with "
                f"{report.settings['num_classes']} classes, the registry says {entry.arch} "
                f"with {entry.num_classes}"
            )
    else:  # an ILSVRC classifier: an FCN-32s whose backbone it fills (fc8 left out)
        convert_caffemodel(source, out, arch="fcn32s", num_classes=1, classes=["unused"])
    logger.info("converted %s to %s", source, out)
    return out


def fetch_converted(entry: WeightsEntry, progress: bool = True) -> Path:
    """The file a net is filled from: the published one, or for a caffemodel its conversion
    (downloaded and converted once, then cached)."""
    if entry.format != "caffemodel":
        return fetch(entry, progress)
    out = converted_path(entry)
    if out.is_file():
        return out
    source = fetch(entry, progress)
    with locked(out):
        if out.is_file():  # converted by another process meanwhile
            return out
        check_space(out.parent, entry.size, f"the conversion of {entry.name}")
        try:
            return _convert(entry, source, out)
        except HubError:
            raise
        except ValueError as error:  # the importer's and reader's errors
            raise WeightsError(f"{entry.name}: cannot convert {source}: {error}") from error


def _read(path: Path) -> dict:
    """``path`` through the one weights reader, its errors as :class:`WeightsError`."""
    try:
        return read_weights(path, what="weights file")
    except WeightsFileError as error:
        raise WeightsError(str(error)) from error


def _is_checkpoint(contents: object) -> bool:
    from fcnseg.checkpoint import FORMAT

    return isinstance(contents, dict) and contents.get("format") == FORMAT


def _family(model: nn.Module) -> str:
    arch = getattr(model, "arch", None)
    family = registry.ARCH_BACKBONES.get(arch or "")
    if family is None:
        raise WeightsError(
            f"the net (arch {arch!r}) has no known backbone family; weights fit "
            f"{', '.join(registry.ARCH_BACKBONES)}"
        )
    return family


def _load_exact(module: nn.Module, state: Mapping[str, Tensor], what: str, source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the first bad key."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise WeightsError(
            f"{source} does not fit the {what}: "
            + (f"missing {missing[:3]}" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"unexpected {unexpected[:3]}" if unexpected else "")
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise WeightsError(
                f"{source}: {key} has shape {tuple(value.shape)}, the {what}'s is "
                f"{tuple(own[key].shape)} (another width, input channels or classes?)"
            )
    module.load_state_dict(state)


# --------------------------------------------------------------------------- whole nets


@torch.no_grad()
def _fill_net(model: nn.Module, path: Path, label: str, entry: WeightsEntry | None) -> list[str]:
    """Fill every tensor of ``model`` from an fcnseg checkpoint (or a caffemodel path)."""
    if path.suffix == ".caffemodel":
        from fcnseg.interop.caffe_import import import_caffemodel

        try:
            source_net, _ = import_caffemodel(path)
        except ValueError as error:
            raise WeightsError(f"cannot import {path}: {error}") from error
        contents = {"arch": source_net.arch, "state_dict": source_net.state_dict(), "meta": {}}
        contents["settings"] = settings_of(source_net)
    else:
        contents = _read(path)
        if not _is_checkpoint(contents):
            raise WeightsError(
                f"{label} is not a whole net (an fcnseg checkpoint or .caffemodel); for a "
                "backbone state dict use weights_backbone="
            )
    arch, settings = contents["arch"], contents.get("settings", {})
    if arch != model.arch:
        raise WeightsError(
            f"{label} holds an {arch} with {settings.get('num_classes')} classes; build it with "
            f"fcnseg.models.{arch}(num_classes={settings.get('num_classes')}, weights=...), not "
            f"{model.arch}"
        )
    if settings.get("num_classes") != model.num_classes:
        raise WeightsError(
            f"{label} scores {settings.get('num_classes')} classes, the net "
            f"{model.num_classes}: pass num_classes={settings.get('num_classes')}"
        )
    _load_exact(model, contents["state_dict"], f"{model.arch} net", label)
    meta = dict(contents.get("meta", {}))
    if entry is not None:
        meta.setdefault("classes", entry.classes)
        meta["weights"] = entry.name
    model.metadata = metadata_of(model).updated(**meta)
    return list(contents["state_dict"])


# --------------------------------------------------------------------------- backbones


def _backbone_state(family: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision classifier state dict in our backbone's names (the pure mappings)."""
    if family.startswith("resnet"):
        from fcnseg.models.backbones.resnet import from_torchvision_resnet

        return from_torchvision_resnet(state)
    if family == "mobilenet_v3_large":
        from fcnseg.models.backbones.mobilenet import from_torchvision_mobilenet_v3

        return from_torchvision_mobilenet_v3(state)
    raise WeightsError(f"no torchvision mapping for a {family} backbone")


@torch.no_grad()
def _fill_backbone(
    model: nn.Module, path: Path, label: str, extra_channels: str | None = None
) -> list[str]:
    """Fill the backbone of ``model`` from an ImageNet classifier; score layers stay zero.
    ``extra_channels`` as :func:`~fcnseg.models.surgery.transplant_vgg16`'s (early fusion)."""
    from fcnseg.models.surgery import TransplantError, transplant_vgg16

    family = _family(model)
    if path.suffix == ".caffemodel":
        from fcnseg.interop.caffe_import import import_caffemodel

        if family != "vgg16":
            raise WeightsError(f"{label}: a caffemodel backbone fills VGG16 nets, not {family}")
        try:
            source_net, _ = import_caffemodel(path, arch="fcn32s", num_classes=1)
        except ValueError as error:
            raise WeightsError(f"cannot import {path}: {error}") from error
        contents = {"state_dict": source_net.state_dict()}
    else:
        contents = _read(path)
    if _is_checkpoint(contents):  # a converted classifier (or any net of the same backbone)
        state = {
            k.removeprefix("backbone."): v
            for k, v in contents["state_dict"].items()
            if k.startswith("backbone.")
        }
        own = model.backbone.state_dict().get("conv1_1.weight")
        if extra_channels is not None and own is not None and "conv1_1.weight" in state:
            from fcnseg.models.surgery import widen_conv1  # early fusion: more than RGB in

            if own.shape[1] > state["conv1_1.weight"].shape[1]:
                state["conv1_1.weight"] = widen_conv1(
                    state["conv1_1.weight"], own.shape[1], extra_channels
                )
        _load_exact(model.backbone, state, f"{model.arch} backbone", label)
        return [f"backbone.{k}" for k in state]
    if not isinstance(contents, dict):
        raise WeightsError(f"{label} does not hold a state dict")
    state = contents.get("state_dict", contents.get("model", contents))
    if family == "vgg16":
        try:
            return transplant_vgg16(model, state, extra_channels)
        except (TransplantError, ValueError) as error:
            raise WeightsError(
                f"{label} does not fit the {model.arch} backbone: {error}"
            ) from error
    mapped = _backbone_state(family, state)
    _load_exact(model.backbone, mapped, f"{model.arch} backbone", label)
    return [f"backbone.{k}" for k in mapped]


# --------------------------------------------------------------------------- the API


@dataclass(frozen=True)
class Resolved:
    """A weights argument resolved to a local file: the entry (``None`` for a path) and path."""

    entry: WeightsEntry | None
    path: Path
    label: str


def resolve(
    weights: str | os.PathLike,
    fills: str,
    arch: str | None = None,
    preprocessing: str | None = None,
    progress: bool = True,
) -> Resolved:
    """A name, ``"imagenet"`` (backbones; needs ``arch``) or path as a local file, fetched and
    converted if needed. ``fills`` ("net" or "backbone") is what the caller will fill."""
    text = os.fspath(weights)
    if Path(text).is_file():
        return Resolved(None, Path(text), text)
    if text == IMAGENET:
        if fills != "backbone":
            raise WeightsError("'imagenet' names backbone weights: use weights_backbone='imagenet'")
        entry = registry.imagenet_entry(arch or "", preprocessing)
    else:
        entry = registry.find(text)
    if entry.fills != fills:
        use = "weights_backbone" if entry.fills == "backbone" else "weights"
        raise WeightsError(f"{entry.name} fills a {entry.fills}: pass it as {use}={entry.name!r}")
    if arch is not None and fills == "backbone":
        family = registry.ARCH_BACKBONES.get(arch)
        if entry.backbone != family:
            raise WeightsError(
                f"{entry.name} is a {entry.backbone} classifier; {arch}'s backbone is {family}"
            )
    return Resolved(entry, fetch_converted(entry, progress), entry.name)


def apply_weights(
    model: nn.Module,
    weights: str | os.PathLike | None = None,
    weights_backbone: str | os.PathLike | None = None,
    preprocessing: str | None = None,
    progress: bool = True,
) -> nn.Module:
    """Fill a freshly built net in place and return it (what the builders call).

    ``weights``: a whole net, a registry name ("voc-fcn8s") or a file (fcnseg checkpoint or
    ``.caffemodel``); its arch and classes must be the net's. ``weights_backbone``: the
    backbone only, "imagenet" (the registry's classifier for the net's backbone), a registry
    name ("resnet50-imagenet") or a file (a torchvision-format state dict, a converted fcnseg
    checkpoint or a VGG16 ``.caffemodel``); the score layers keep the paper's zeros.
    ``preprocessing`` ("caffe" or "imagenet") picks between the two VGG16 classifiers for
    "imagenet" (default: torchvision's). The net's metadata (:func:`fcnseg.metadata_of`)
    records the source.
    """
    if weights is not None and weights_backbone is not None:
        raise WeightsError("give weights (a whole net) or weights_backbone, not both")
    if weights is not None:
        found = resolve(weights, "net", model.arch, progress=progress)
        _fill_net(model, found.path, found.label, found.entry)
        return model
    if weights_backbone is not None:
        found = resolve(weights_backbone, "backbone", model.arch, preprocessing, progress)
        _fill_backbone(model, found.path, found.label)
        meta = {"weights_backbone": found.label}
        if found.entry is not None:
            meta["backbone_preprocessing"] = found.entry.preprocessing
        model.metadata = metadata_of(model).updated(**meta)
    return model


def initialize_from(
    model: nn.Module,
    init: str,
    preprocessing: str | None = None,
    extra_channels: str | None = None,
) -> tuple[str, str, list[str]]:
    """A recipe's ``init`` given as "imagenet" or a registry name: ``(kind, source, filled)``.

    A whole-net entry fills the net (its arch and classes must match); a backbone entry (or
    "imagenet") the backbone. A backbone whose expected preprocessing differs from the
    recipe's is logged as a warning.
    """
    entry = (
        registry.imagenet_entry(model.arch, preprocessing)
        if init == IMAGENET
        else registry.find(init)
    )
    if preprocessing is not None and entry.preprocessing != preprocessing:
        logger.warning(
            "%s expects %s preprocessing, the recipe uses %s",
            entry.name,
            entry.preprocessing,
            preprocessing,
        )
    found = resolve(entry.name, entry.fills, model.arch)
    if entry.fills == "net":
        return "weights", entry.name, _fill_net(model, found.path, entry.name, entry)
    return "imagenet", entry.name, _fill_backbone(model, found.path, entry.name, extra_channels)
