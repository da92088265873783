"""Place the blobs of the original FCN Caffe models (fcn.berkeleyvision.org) in fcnseg's nets.

fcnseg keeps Caffe's layer names, so blobs are placed by name: ``backbone.conv1_1.weight`` is
blob 0 of layer ``conv1_1``, ``score_fr.bias`` blob 1 of ``score_fr``, buffer ``scale_pool4``
the blob of Scale layer ``scale_pool4``. The net (32s, 16s, 8s, at-once; classes, input
channels, width) is inferred from the names and shapes; the ``.prototxt`` is not needed or read,
and every blob is checked against the net built.

- Convolution and deconvolution weights have Caffe's shapes already (a deconvolution's is
  ``in x out x k x k``, as in ``nn.ConvTranspose2d``).
- Fully connected weights become kernels where the target is a convolution (section 3.1:
  VGG16's fc6, 4096 x 25088, is 4096 x 512 x 7 x 7).
- The at-once FCN-8s's Scale layers hold one constant per channel; the net's buffers one number.
- SIFT Flow's two-headed nets (``score_fr_sem``/``score_fr_geo``, ``upscore2_sem``, ...): one
  head, ``head="sem"`` by default or ``"geo"``; the other is reported as unplaced.
- NYUDv2 RGB-D early fusion: its first layer ``conv1_1_bgrd`` is ``conv1_1`` on 4 channels.
  NYUDv2 late fusion (towers ``conv1_1color``, ..., ``score_frcolor`` and ``conv1_1hha``, ...,
  scores averaged): fcnseg's nets have one tower; ``tower=`` imports one as an FCN-32s.
- ILSVRC classifiers (VGG16, CaffeNet) fill the backbone of any FCN of their family; ``fc8`` is
  reported as unplaced and the score layers keep the paper's zero initialisation.
- FCN-AlexNet maps onto ``fcn_alexnet`` when fcnseg has that builder, and is refused, saying
  so, when it has not.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fcnseg.checkpoint import save
from fcnseg.data.transforms import CAFFE_MEAN_BGR, IGNORE_INDEX
from fcnseg.errors import FcnsegError
from fcnseg.interop.caffe import CaffeNet, read_caffemodel
from fcnseg.models import create_model, list_models
from fcnseg.models.surgery import VGG16_CONV_NAMES

logger = logging.getLogger(__name__)

# Input means of the reference data layers (fcn.berkeleyvision.org, *_layers.py), BGR order.
NYUD_MEAN_BGR = (116.190, 97.203, 92.318)
NYUD_MEAN_HHA = (132.431, 94.076, 118.477)  # H, H, A in the PNG's channel order (no flip)
NYUD_MEAN_LOG_DEPTH = 7.844  # depth input: log(depth in mm) minus this
SIFTFLOW_MEAN_BGR = (114.578, 115.294, 108.353)
NYUD_MODALITIES = ("rgb", "hha", "rgbd")

# Names the reference nets use for our layers where they differ from ours.
LAYER_ALIASES = {"conv1_1_bgrd": "conv1_1"}  # nyud-fcn32s-color-d: conv1_1 over BGR + depth


class CaffeImportError(FcnsegError):
    """A readable caffemodel that does not fit the requested (or any) fcnseg net."""


@dataclass(frozen=True)
class _Family:
    """A backbone family the reference released: its layer names and its FCN builders."""

    name: str
    first_conv: str
    width_layers: tuple[tuple[str, int], ...]  # (layer, output channels at width 1)
    archs: tuple[str, ...]


FAMILIES = (
    _Family(
        "VGG16",
        "conv1_1",
        (("conv1_1", 64), ("conv3_1", 256), ("conv5_1", 512), ("fc6", 4096)),
        ("fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"),
    ),
    _Family("AlexNet (CaffeNet)", "conv1", (("conv1", 96), ("fc6", 4096)), ("fcn_alexnet",)),
)
HEAD_LAYERS = ("score_", "upscore")  # prefixes of the layers that depend on the classes
SKIP_SCALES = ("scale_pool4", "scale_pool3")  # the at-once FCN-8s's Scale layers


@dataclass
class ImportPlan:
    """What to build and which Caffe layer fills which of its layers.

    ``renames``: Caffe layer -> our layer, for those whose names differ. ``skipped``: Caffe
    layers deliberately left out (another head or tower, the classifier's fc8), with reasons.
    ``notes``: what was inferred from which layer, and caveats.
    """

    arch: str
    settings: dict[str, Any]
    head: str | None = None
    tower: str | None = None
    renames: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    file_num_classes: int | None = None


def _suffixes(names: Sequence[str], stem: str) -> list[str]:
    return sorted(name[len(stem) :] for name in names if name.startswith(stem) and name != stem)


def _out_channels(shape: tuple[int, ...]) -> int:
    """Output channels of a conv (O, I, k, k) or fc (O, I) weight."""
    return shape[0] if shape else 1


_TOWER_LAYERS = {*VGG16_CONV_NAMES, "fc6", "fc7", "score_fr"}  # what each late-fusion tower has


def _pick_head(names: Sequence[str], head: str | None, plan: ImportPlan) -> None:
    """SIFT Flow's heads: ``score_fr_sem``, ``upscore2_sem``, ... and ``score_fr_geo``, ..."""
    heads = _suffixes([n for n in names if n.startswith("score_fr_")], "score_fr_")
    if not heads:
        if head is not None:
            raise CaffeImportError(f"head={head!r} given, but the net has one head (score_fr)")
        return
    if head is None and "sem" not in heads:
        raise CaffeImportError(f"the net has heads {heads}; pick one with head=")
    head = head or "sem"
    if head not in heads:
        raise CaffeImportError(f"head {head!r} is not in the net; its heads: {heads}")
    for name in names:
        for other in heads:
            if name.startswith(HEAD_LAYERS) and name.endswith(f"_{other}"):
                if other == head:
                    plan.renames[name] = name[: -len(other) - 1]
                else:
                    plan.skipped[name] = f"the {other!r} head; import it with head={other!r}"
    plan.head = head
    plan.notes.append(f"head {head!r} of {heads} (layers *_{head})")


def _pick_tower(names: Sequence[str], tower: str | None, plan: ImportPlan) -> None:
    """NYUDv2 late fusion: ``conv1_1color`` ... ``score_frcolor`` beside ``conv1_1hha`` ..."""
    towers = _suffixes([n for n in names if n.startswith("fc7")], "fc7")
    if not towers:
        if tower is not None:
            raise CaffeImportError(f"tower={tower!r} given, but the net has a single tower")
        return
    if tower is None:
        raise CaffeImportError(
            f"the net is a late fusion of {len(towers)} towers ({', '.join(towers)}: "
            f"conv1_1{towers[0]}, ..., score_fr{towers[0]}, scores averaged); fcnseg's nets "
            f"have one tower: import one with tower= (one of {towers})"
        )
    if tower not in towers:
        raise CaffeImportError(f"tower {tower!r} is not in the net; its towers: {towers}")
    for name in names:
        for other in towers:
            if name.endswith(other) and name[: -len(other)] in _TOWER_LAYERS:
                if other == tower:
                    plan.renames[name] = name[: -len(other)]
                else:
                    plan.skipped[name] = f"the {other!r} tower; import it with tower={other!r}"
    plan.tower = tower
    plan.notes.append(
        f"tower {tower!r} of {towers}: its own scores, without the other tower's (the fused"
        " net averages both), upsampled by the shared upscore"
    )


def _family_of(ours: Mapping[str, Any]) -> _Family:
    family = next((f for f in FAMILIES if f.first_conv in ours), None)
    if family is None:
        names = list(ours)
        raise CaffeImportError(
            "found neither VGG16's conv1_1 nor AlexNet's conv1; layers with weights: "
            + ", ".join(names[:30])
            + (" ..." if len(names) > 30 else "")
        )
    missing = [arch for arch in family.archs if arch not in list_models()]
    if missing:
        raise CaffeImportError(
            f"the net is an FCN-{family.name}, and fcnseg has no {family.name} net yet"
            f" (no builder {', '.join(missing)})"
        )
    return family


def _infer_vgg_arch(ours: Mapping[str, Any]) -> str:
    if "score_pool3" in ours:
        return "fcn8s_atonce" if any(s in ours for s in SKIP_SCALES) else "fcn8s"
    return "fcn16s" if "score_pool4" in ours else "fcn32s"


def _pick_arch(
    ours: Mapping[str, Any],
    family: _Family,
    arch: str | None,
    num_classes: int | None,
    plan: ImportPlan,
) -> None:
    """The arch from the score layers present, the classes from score_fr (or as asked)."""
    if "score_fr" in ours:
        inferred = _infer_vgg_arch(ours) if family.name == "VGG16" else family.archs[0]
        plan.file_num_classes = _out_channels(ours["score_fr"][0])
    elif "fc8" in ours:
        inferred = None
        plan.skipped["fc8"] = (
            f"the ILSVRC classifier's last layer ({_out_channels(ours['fc8'][0])} classes);"
            " FCN score layers start at zero (section 4.3)"
        )
        if arch is None or num_classes is None:
            raise CaffeImportError(
                f"the net is a {family.name} classifier (fc8, no score_fr): give arch (one of"
                f" {', '.join(family.archs)}) and num_classes for the FCN to build on it"
            )
    else:
        raise CaffeImportError(
            f"the net has {family.name}'s {family.first_conv} but neither score_fr (an FCN)"
            " nor fc8 (a classifier)"
        )
    if arch is None:
        arch = inferred
        plan.notes.append(f"arch {arch} from its score layers")
    elif arch not in family.archs:
        raise CaffeImportError(
            f"arch {arch!r} does not fit this {family.name} net; choose one of {family.archs}"
        )
    elif inferred is not None and arch != inferred:
        plan.notes.append(f"arch {arch} as asked; the file's layers make an {inferred}")
    file_classes = plan.file_num_classes
    if num_classes is None:
        num_classes = file_classes
        plan.notes.append(f"num_classes {num_classes} from score_fr")
    elif file_classes is not None and num_classes != file_classes:
        plan.notes.append(
            f"num_classes {num_classes} as asked; the file scores {file_classes}: its score"
            " and upsampling layers are left at the paper's initialisation"
        )
    plan.arch = arch
    plan.settings["num_classes"] = num_classes


def _pick_size(ours: Mapping[str, Any], family: _Family, plan: ImportPlan) -> None:
    """Input channels from the first convolution; the width multiplier from the layer widths."""
    first = ours[family.first_conv][0]
    if len(first) != 4:
        raise CaffeImportError(
            f"{family.first_conv} weight has shape {first}; expected out x in x k x k"
        )
    plan.settings["in_channels"] = first[1]
    widths: list[float] = []
    for layer, channels in family.width_layers:
        if ours.get(layer):
            width = _out_channels(ours[layer][0]) / channels
            if width not in widths:
                widths.append(width)
    plan.settings["width"] = _fitting_width(plan, ours, widths)
    if first[1] != 3:
        plan.notes.append(f"in_channels {first[1]} from {family.first_conv}")
    if plan.settings["width"] != 1:
        plan.notes.append(f"width {plan.settings['width']:g} from the layer widths")


def plan_import(
    shapes: Mapping[str, Sequence[tuple[int, ...]]],
    arch: str | None = None,
    num_classes: int | None = None,
    head: str | None = None,
    tower: str | None = None,
) -> ImportPlan:
    """Infer the fcnseg net for a caffemodel from its layer names and blob shapes.

    ``shapes``: blob shapes by Caffe layer name (layers with blobs only). ``arch`` and
    ``num_classes`` override what is inferred; ``head`` picks one head of a multi-head net
    (SIFT Flow: "sem" by default, or "geo"); ``tower`` one tower of a late-fusion net (NYUDv2
    color-hha: "color" or "hha"). Pure: reads names and shapes only.
    """
    names = list(shapes)
    plan = ImportPlan(arch="", settings={})
    _pick_head(names, head, plan)
    _pick_tower(names, tower, plan)
    for caffe_name, our_name in LAYER_ALIASES.items():
        if caffe_name in shapes and our_name not in shapes:
            plan.renames[caffe_name] = our_name
            plan.notes.append(f"{our_name} <- {caffe_name}")
    ours = {plan.renames.get(n, n): shapes[n] for n in names if n not in plan.skipped}
    family = _family_of(ours)
    _pick_arch(ours, family, arch, num_classes, plan)
    _pick_size(ours, family, plan)
    return plan


def _fitting_width(plan: ImportPlan, ours: Mapping[str, Any], widths: list[float]) -> float:
    """The first candidate width whose net has the file's backbone shapes (built on 'meta')."""
    if len(widths) == 1:
        return widths[0]
    for width in widths:
        target = target_shapes(plan.arch, {**plan.settings, "width": width})
        if all(
            _fit_shape(ours[layer][index], target[key]) is not None
            for key, (layer, index) in _key_sources(target).items()
            if key.startswith("backbone.") and layer in ours and index < len(ours[layer])
        ):
            return width
    return widths[0]  # the mismatch is reported, layer by layer, when the blobs are placed


def target_shapes(arch: str, settings: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of ``create_model(arch, **settings)``, built on 'meta': no memory used."""
    with torch.device("meta"):
        model = create_model(arch, **settings)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


# --------------------------------------------------------------------------- placing


def _key_sources(target: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """Our state-dict key -> (layer name, blob index): ``backbone.fc6.bias`` -> ("fc6", 1)."""
    sources = {}
    for key in target:
        module, _, attribute = key.rpartition(".")
        if not module:  # a buffer of the FCN itself: scale_pool4, scale_pool3
            sources[key] = (key, 0)
        elif attribute in ("weight", "bias"):
            sources[key] = (module.removeprefix("backbone."), 0 if attribute == "weight" else 1)
    return sources


def _fit_shape(source: tuple[int, ...], target: tuple[int, ...]) -> str | None:
    """How a blob of shape ``source`` fills a parameter of shape ``target``, or None.

    "same": equal shapes; "fc->conv": an fc weight (O, C*k*k) into a convolution (O, C, k, k),
    whose flattening order (channel, row, column) is the fc layer's; "constant": a blob of
    equal values into a scalar buffer.
    """
    source, target = tuple(source), tuple(target)
    if source == target:
        return "same"
    if len(target) == 4 and source == (target[0], math.prod(target[1:])):
        return "fc->conv"
    if target == ():
        return "constant"
    return None


@dataclass
class ImportReport:
    """What an import did: the net built, what filled it, and what was left out.

    ``filled``: our key -> its Caffe source ("conv1_1 blob 0", "fc6 blob 0 (fc->conv)").
    ``unfilled``: our key -> why it keeps the builder's initialisation. ``unplaced``: Caffe
    layer -> why its blobs went nowhere.
    """

    source: str
    net_name: str
    layout: str
    arch: str
    settings: dict[str, Any]
    filled: dict[str, str] = field(default_factory=dict)
    unfilled: dict[str, str] = field(default_factory=dict)
    unplaced: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    head: str | None = None
    tower: str | None = None
    saved_to: str | None = None

    def format(self) -> str:
        """A few lines for people: the net, then what was left out and why."""
        settings = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.settings.items()
        )
        lines = [
            f"{self.source}: {self.net_name or '(unnamed net)'}, {self.layout!r} layout",
            f"built {self.arch}({settings}); filled {len(self.filled)} tensors",
        ]
        lines += [f"  note: {note}" for note in self.notes]
        if self.unplaced:
            lines.append(f"unplaced Caffe layers ({len(self.unplaced)}):")
            lines += [f"  {name}: {why}" for name, why in self.unplaced.items()]
        if self.unfilled:
            lines.append(f"left at their initial values ({len(self.unfilled)}):")
            lines += [f"  {key}: {why}" for key, why in self.unfilled.items()]
        if self.saved_to:
            lines.append(f"wrote {self.saved_to}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Match:
    """Where one of our tensors comes from: Caffe layer, blob index, and how it is reshaped
    ("same", "fc->conv", "constant" or "zero" for a bias the file lacks)."""

    layer: str
    index: int
    how: str


def match_blobs(
    shapes: Mapping[str, Sequence[tuple[int, ...]]],
    target: Mapping[str, tuple[int, ...]],
    head_mismatch_ok: bool = False,
) -> tuple[dict[str, Match], dict[str, str]]:
    """Match blob shapes by (our) layer name to a state dict's keys and shapes. Pure.

    Returns ``(matches, unplaced)``: our key -> :class:`Match`, and the layers that fit
    nowhere with the reason. A blob of the wrong shape raises :class:`CaffeImportError`,
    except in a score or upsampling layer when ``head_mismatch_ok`` (another number of
    classes was asked for). Constant blobs (``how="constant"``) are checked when placed.
    """
    by_layer: dict[str, dict[int, str]] = {}
    for key, (layer, index) in _key_sources(target).items():
        by_layer.setdefault(layer, {})[index] = key
    matches: dict[str, Match] = {}
    unplaced: dict[str, str] = {}
    for layer, blob_shapes in shapes.items():
        keys = by_layer.get(layer)
        if keys is None:
            unplaced[layer] = "no such layer in this net"
            continue
        if len(blob_shapes) > len(keys):
            unplaced[layer] = (
                f"{len(blob_shapes)} blobs (a bias?); the net's layer takes {len(keys)}"
            )
            continue
        found = {}
        for index, key in keys.items():
            if index >= len(blob_shapes):
                if index == 1:  # Caffe's bias_term: false is a zero bias
                    found[key] = Match(layer, index, "zero")
                continue
            how = _fit_shape(blob_shapes[index], target[key])
            if how is None:
                if head_mismatch_ok and layer.startswith(HEAD_LAYERS):
                    unplaced[layer] = (
                        f"blob {index} has shape {tuple(blob_shapes[index])}, {key} is"
                        f" {tuple(target[key])} (another number of classes)"
                    )
                    break
                raise CaffeImportError(
                    f"layer {layer!r} blob {index} has shape {tuple(blob_shapes[index])}, which"
                    f" does not fit {key} {tuple(target[key])}"
                )
            found[key] = Match(layer, index, how)
        else:
            matches.update(found)
    return matches, unplaced


def _tensor(arrays: Sequence[np.ndarray], match: Match, shape: tuple[int, ...]) -> Tensor:
    """The tensor a match describes; :class:`CaffeImportError` for a Scale blob that varies."""
    if match.how == "zero":
        return torch.zeros(shape)
    array = arrays[match.index]
    if match.how == "constant":
        values = array.ravel()
        if np.any(values != values[0]):
            raise CaffeImportError(
                f"layer {match.layer!r} scales each channel differently"
                f" ({values.min():g}..{values.max():g}); fcnseg's skip scale is one number"
            )
        array = values[:1]
    return torch.from_numpy(np.ascontiguousarray(array)).reshape(shape)


def _initial(key: str) -> str:
    """What the builder initialised a head tensor to, as a clause of the report."""
    if key.startswith("backbone."):
        return ""
    if key.startswith("upscore"):
        return "; bilinear upsampling"
    if key.startswith("scale_"):
        return "; the at-once scale"
    return "; zero, as the paper starts scores (section 4.3)"


def import_caffemodel(
    source: str | os.PathLike | CaffeNet,
    arch: str | None = None,
    num_classes: int | None = None,
    head: str | None = None,
    tower: str | None = None,
) -> tuple[nn.Module, ImportReport]:
    """Build the fcnseg net for a caffemodel and fill it: ``(model in eval mode, report)``.

    ``arch``/``num_classes`` default to what the layer names and shapes say (required for an
    ILSVRC classifier source). ``head``/``tower``: see :func:`plan_import`. Every backbone
    parameter must come from the file; score and upsampling layers the file lacks (or that
    have another number of classes) keep the builder's initialisation and are reported.
    """
    net = source if isinstance(source, CaffeNet) else read_caffemodel(source)
    label = str(source) if not isinstance(source, CaffeNet) else (net.name or "<caffemodel>")
    blobs = net.blobs()
    shapes = {name: [array.shape for array in arrays] for name, arrays in blobs.items()}
    plan = plan_import(shapes, arch, num_classes, head, tower)
    model = create_model(plan.arch, **plan.settings)
    target = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    ours = {plan.renames.get(n, n): a for n, a in blobs.items() if n not in plan.skipped}
    mismatch_ok = plan.file_num_classes not in (None, plan.settings["num_classes"])
    shapes = {layer: [a.shape for a in arrays] for layer, arrays in ours.items()}
    matches, unplaced = match_blobs(shapes, target, head_mismatch_ok=mismatch_ok)
    state = {key: _tensor(ours[m.layer], m, target[key]) for key, m in matches.items()}
    inverse = {ours_name: caffe for caffe, ours_name in plan.renames.items()}
    filled = {
        key: f"{inverse.get(m.layer, m.layer)} blob {m.index}"
        + ("" if m.how == "same" else f" ({m.how})")
        for key, m in matches.items()
    }
    unplaced = {inverse.get(layer, layer): why for layer, why in unplaced.items()}
    for layer in unplaced:
        if layer in SKIP_SCALES:
            unplaced[layer] += f" ({plan.arch} scales no skip: arch='fcn8s_atonce' does)"
    unplaced = {**plan.skipped, **unplaced}
    unfilled = {}
    for key, (layer, _) in _key_sources(target).items():
        if key not in state:
            origin = inverse.get(layer, layer)
            unfilled[key] = unplaced.get(origin, f"no layer {origin!r} in the file{_initial(key)}")
    backbone_holes = [key for key in unfilled if key.startswith("backbone.")]
    if backbone_holes:
        raise CaffeImportError(
            f"{label}: the file does not fill the {plan.arch} backbone: "
            + "; ".join(f"{key}: {unfilled[key]}" for key in backbone_holes[:5])
        )
    with torch.no_grad():
        own = model.state_dict()
        for key, value in state.items():
            own[key].copy_(value)
    report = ImportReport(
        label,
        net.name,
        net.layout,
        plan.arch,
        dict(plan.settings),
        filled,
        unfilled,
        unplaced,
        list(plan.notes),
        plan.head,
        plan.tower,
    )
    logger.info("imported %s as %s: %d tensors", label, plan.arch, len(filled))
    return model.eval(), report


# --------------------------------------------------------------------------- saving


def reference_meta(
    dataset: str | None,
    num_classes: int,
    in_channels: int = 3,
    head: str | None = None,
    tower: str | None = None,
    modality: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Checkpoint meta for a reference model: classes, preprocessing, ignore index; and notes.

    Without ``dataset`` the preprocessing is the ILSVRC BGR mean subtraction of the VOC and
    PASCAL-Context nets; with one, the mean its reference data layer subtracted. NYUDv2's
    ``modality`` ("rgb", "hha", "rgbd") defaults to "rgbd" for 4 input channels, "hha" for
    the late-fusion net's hha tower, else "rgb".
    """
    from fcnseg.data.transforms import CaffeMeanSubtract, Normalize

    notes: list[str] = []
    # every reference data layer marks void pixels with 255 and, but for NYUDv2 and SIFT Flow,
    # subtracts the ILSVRC mean (voc, sbd, pascal-context)
    meta: dict[str, Any] = {"ignore_index": IGNORE_INDEX}
    preprocessing = CaffeMeanSubtract(CAFFE_MEAN_BGR, extra_mean=None)
    if dataset is not None:
        classes = _dataset_classes(dataset, head)
        if len(classes) != num_classes:
            raise CaffeImportError(
                f"dataset {dataset!r} has {len(classes)} classes, the net scores {num_classes}"
            )
        meta["classes"] = classes
        if dataset == "siftflow":
            preprocessing = CaffeMeanSubtract(SIFTFLOW_MEAN_BGR)
        elif dataset == "nyud":
            if modality is None:
                modality = "rgbd" if in_channels == 4 else "hha" if tower == "hha" else "rgb"
            if modality not in NYUD_MODALITIES:
                raise CaffeImportError(f"modality {modality!r}; valid: {NYUD_MODALITIES}")
            preprocessing = (
                Normalize(NYUD_MEAN_HHA) if modality == "hha" else CaffeMeanSubtract(NYUD_MEAN_BGR)
            )
            meta["modality"] = modality
            if modality == "rgbd":
                meta["depth_preprocessing"] = f"log(depth in mm) - {NYUD_MEAN_LOG_DEPTH}"
                notes.append(
                    "the depth channel must be log(depth in mm) -"
                    f" {NYUD_MEAN_LOG_DEPTH} before the net; fcnseg's normaliser passes it"
                    " through unchanged"
                )
    elif modality is not None:
        raise CaffeImportError("modality is for dataset 'nyud' only")
    meta["preprocessing"] = preprocessing.spec()
    return meta, notes


def _dataset_classes(dataset: str, head: str | None) -> list[str]:
    if dataset in ("voc", "sbd"):
        from fcnseg.data.voc import VOC_CLASSES as classes
    elif dataset == "context":
        from fcnseg.data.context import CONTEXT_CLASSES as classes
    elif dataset == "nyud":
        from fcnseg.data.nyud import NYUD_CLASSES as classes
    elif dataset == "siftflow":
        from fcnseg.data.siftflow import SIFTFLOW_CLASSES, SIFTFLOW_GEOMETRIC_CLASSES

        classes = SIFTFLOW_GEOMETRIC_CLASSES if head == "geo" else SIFTFLOW_CLASSES
    else:
        raise CaffeImportError(
            f"no reference Caffe model was trained on dataset {dataset!r}; known: voc, sbd,"
            " context, nyud, siftflow (or give the class names in a file)"
        )
    return list(classes)


def convert_caffemodel(
    source: str | os.PathLike,
    out: str | os.PathLike,
    arch: str | None = None,
    num_classes: int | None = None,
    head: str | None = None,
    tower: str | None = None,
    dataset: str | None = None,
    classes: Sequence[str] | None = None,
    modality: str | None = None,
) -> ImportReport:
    """Import a caffemodel and save it as an fcnseg checkpoint at ``out``, with metadata.

    ``dataset`` (voc, sbd, context, nyud, siftflow) sets the class names and the reference's
    input mean; ``classes`` gives names directly (and then the ILSVRC mean is recorded).
    """
    if dataset is not None and classes is not None:
        raise CaffeImportError("give dataset or classes, not both")
    model, report = import_caffemodel(source, arch, num_classes, head, tower)
    settings = report.settings
    meta, notes = reference_meta(
        dataset,
        settings["num_classes"],
        settings["in_channels"],
        head=report.head,
        tower=report.tower,
        modality=modality,
    )
    if classes is not None:
        if len(classes) != settings["num_classes"]:
            raise CaffeImportError(
                f"{len(classes)} class names given; the net scores {settings['num_classes']}"
            )
        meta["classes"] = list(classes)
    meta["caffe"] = {"source": Path(source).name, "net": report.net_name, "layout": report.layout}
    report.notes += notes
    report.saved_to = str(save(model, out, **meta))
    return report
