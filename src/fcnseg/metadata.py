"""What a trained net needs besides its weights to read an image and name what it sees.

As torchvision's weights carry their classes and preprocessing, an fcnseg net carries one
:class:`Metadata`: set by :func:`fcnseg.load` from the checkpoint, written by
:func:`fcnseg.save`, read through :func:`metadata_of`. Checkpoints store it as a plain dict
(:meth:`Metadata.to_dict`: str, int, float, lists), so they load with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.inference.crf import CRF, CRFError

Colour = tuple[int, int, int]


class MetadataError(FcnsegError):
    """Metadata of the wrong form (a palette entry that is not RGB, a non-dict spec, ...)."""


@dataclass(frozen=True)
class Metadata:
    """A net's classes, colours and preprocessing; every field may be unrecorded."""

    classes: tuple[str, ...] | None = None  # class names in index order; None: not recorded
    palette: tuple[Colour, ...] | None = None  # an RGB colour (0..255) per class, index order
    preprocessing: dict[str, Any] | None = None  # normaliser spec (transforms.normalizer_from_spec)
    input_scale: float = 1.0  # the factor training images were resized by; predict does too
    ignore_index: int | None = None  # label value of void pixels in the training labels
    dataset: str | None = None  # name of the training dataset (fcnseg.data.by_name)
    # test-time augmentation to apply by default: {"flip": bool, "scales": [float, ...]}, and
    # "crf": {parameter: value} when a CRF follows (fcnseg.inference.tta.augmentation_of;
    # from the recipe's test_flip, test_scales and test_crf)
    test_time_augmentation: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # anything else (Caffe source, modality)

    def __post_init__(self) -> None:
        # normalise lists (as read from a checkpoint) to tuples, checking the form
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(name) for name in self.classes))
        if self.palette is not None:
            object.__setattr__(self, "palette", _colours(self.palette))
        if self.preprocessing is not None and not isinstance(self.preprocessing, Mapping):
            raise MetadataError(
                f"preprocessing must be a normaliser spec (dict), got {self.preprocessing!r}"
            )
        if self.preprocessing is not None:
            object.__setattr__(self, "preprocessing", dict(self.preprocessing))
        if self.test_time_augmentation is not None:
            object.__setattr__(
                self, "test_time_augmentation", _augmentation(self.test_time_augmentation)
            )
        if not self.input_scale > 0:
            raise MetadataError(f"input_scale must be > 0, got {self.input_scale!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Metadata:
        """Read a checkpoint's ``meta`` dict; keys that are not fields go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names and v is not None}
        if "input_scale" in known:
            known["input_scale"] = float(known["input_scale"])
        extra = {**values.get("extra", {}), **{k: v for k, v in values.items() if k not in names}}
        extra.pop("extra", None)
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples), leaving out what is unrecorded or at its default;
        ``extra``'s keys sit beside the fields, as in checkpoints written before this type."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None or value == f.default:
                continue
            if f.name == "classes":
                value = list(value)
            elif f.name == "palette":
                value = [list(colour) for colour in value]
            values[f.name] = value
        return {**values, **self.extra}

    def updated(self, **values: Any) -> Metadata:
        """A copy with ``values`` (fields or extra keys) replaced."""
        return Metadata.from_dict({**self.to_dict(), **values})


def _augmentation(spec: Any) -> dict[str, Any]:
    """``{"flip": bool, "scales": [float, ...]}`` and an optional ``"crf"`` (its parameters,
    checked by :class:`fcnseg.inference.crf.CRF`) checked for form (values: tta.Augmentation)."""
    if not isinstance(spec, Mapping) or not set(spec) <= {"flip", "scales", "crf"}:
        raise MetadataError(
            "test_time_augmentation must be {'flip': bool, 'scales': [float, ...]} (and "
            f"optionally 'crf': {{parameter: value}}), got {spec!r}"
        )
    flip, scales = spec.get("flip", False), spec.get("scales", [1.0])
    if not isinstance(flip, bool) or not isinstance(scales, Sequence) or isinstance(scales, str):
        raise MetadataError(
            f"test_time_augmentation: flip must be true or false and scales a list, got {spec!r}"
        )
    try:
        values = [float(s) for s in scales]
    except (TypeError, ValueError):
        raise MetadataError(
            f"test_time_augmentation: scales must be numbers, got {scales!r}"
        ) from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise MetadataError(
            f"test_time_augmentation: scales must be finite numbers > 0, at least one; got {values}"
        )
    if spec.get("crf") is None:
        return {"flip": flip, "scales": values}
    try:
        crf = CRF.from_dict(dict(spec["crf"]) if isinstance(spec["crf"], Mapping) else spec["crf"])
    except CRFError as error:
        raise MetadataError(f"test_time_augmentation: {error}") from None
    return {"flip": flip, "scales": values, "crf": crf.to_dict()}


def _colours(palette: Sequence[Sequence[int]]) -> tuple[Colour, ...]:
    colours = []
    for colour in palette:
        rgb = tuple(int(c) for c in colour)
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise MetadataError(f"palette entries must be [r, g, b] in 0..255, got {colour!r}")
        colours.append(rgb)
    return tuple(colours)


def metadata_of(model: nn.Module) -> Metadata:
    """The metadata of ``model`` (empty for a net that was neither loaded nor given one)."""
    metadata = getattr(model, "metadata", None)
    return metadata if isinstance(metadata, Metadata) else Metadata()
