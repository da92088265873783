"""Class probabilities of a batch, with optional test-time augmentation (flips and scales)
and an optional CRF after it.

One function, :func:`class_probabilities`, turns raw images into per-pixel class
probabilities at the images' own size; tiled inference (:mod:`fcnseg.inference.tiling`) and
:func:`fcnseg.segment` both call it. Each *view* of the batch is

1. normalised with the checkpoint's preprocessing,
2. resized bilinearly by ``input_scale * s`` for each test scale ``s`` (the net's own input
   scale, the metadata's ``input_scale``, times the augmentation's),
3. optionally mirrored left-right,
4. scored by the net, mirrored back, resized bilinearly to the input size, and soft-maxed.

Steps 1 to 4 but the softmax are :func:`fcnseg.inference.predict.class_scores`, the one
function every prediction runs (``fcnseg eval``'s too). The probabilities of all views are
averaged (as mmsegmentation's ``aug_test`` does), and, when the augmentation has a ``crf``,
refined by its mean-field inference on the net's input grid (:mod:`fcnseg.inference.crf`).
With no augmentation and no CRF :func:`fcnseg.segment` takes the labels from the raw scores,
so they are :func:`~fcnseg.inference.predict.predict_image`'s label map exactly (the argmax of
soft-maxed scores can differ where rounding makes two classes tie).

A checkpoint may record the augmentation its net is meant to be scored with (metadata
``test_time_augmentation``, written from the recipe's ``test_flip``, ``test_scales`` and
``test_crf``):
:func:`augmentation_of` reads it, and ``fcnseg eval``, ``fcnseg predict`` and
:func:`fcnseg.segment` apply it unless told otherwise (:func:`chosen_augmentation`).
Validation during training scores one view, so it stays cheap.

A flip costs one more pass of the net; scales ``(0.75, 1, 1.25)`` cost about
``0.75² + 1 + 1.25² = 3.1`` passes at scale 1; the CRF's cost grows with its window and
iterations, not with the net (docs/camvid-cpu.md, "A CRF after the net").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fcnseg.inference.crf import CRF, CRFError, refine
from fcnseg.inference.predict import Preprocess, SegmentError, class_scores
from fcnseg.metadata import metadata_of


@dataclass(frozen=True)
class Augmentation:
    """Test-time augmentation: ``scales`` (factors on top of the net's input scale, each
    finite and > 0) and ``flip`` (also score the left-right mirror image); ``crf``: refine the
    views' mean probabilities by this CRF (None: not)."""

    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    crf: CRF | None = None

    def __post_init__(self) -> None:
        scales = tuple(float(s) for s in self.scales)
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise SegmentError(f"scales must be finite numbers > 0, at least one; got {scales}")
        object.__setattr__(self, "scales", scales)
        if self.crf is not None and not isinstance(self.crf, CRF):
            raise SegmentError(f"crf must be a fcnseg.inference.crf.CRF or None, got {self.crf!r}")

    @property
    def views(self) -> int:
        """How many passes of the net one image costs (at differing sizes)."""
        return len(self.scales) * (2 if self.flip else 1)

    @property
    def plain(self) -> bool:
        """One view and no CRF: the labels are the argmax of the net's raw scores."""
        return self.views == 1 and self.crf is None

    def to_dict(self) -> dict[str, Any]:
        """``{"flip": bool, "scales": [float, ...]}``, and ``"crf"``: its parameters when there
        is one: the metadata's and the JSON reports' form."""
        spec: dict[str, Any] = {"flip": self.flip, "scales": list(self.scales)}
        if self.crf is not None:
            spec["crf"] = self.crf.to_dict()
        return spec

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Augmentation:
        """Read :meth:`to_dict`'s form (as :func:`fcnseg.metadata.Metadata` checked it)."""
        try:
            crf = CRF.from_dict(spec["crf"]) if spec.get("crf") is not None else None
        except CRFError as error:
            raise SegmentError(f"test_time_augmentation: {error}") from None
        return cls(flip=spec["flip"], scales=tuple(spec["scales"]), crf=crf)

    def __str__(self) -> str:
        """``none``, ``flip``, ``scales 0.75 1 1.25`` or ``flip, scales 0.75 1 1.25``, with
        the CRF's parameters after them when there is one."""
        parts = ["flip"] if self.flip else []
        if self.scales != (1.0,):
            parts.append("scales " + " ".join(f"{s:g}" for s in self.scales))
        if self.crf is not None:
            parts.append(str(self.crf))
        return ", ".join(parts) or "none"


NO_AUGMENTATION = Augmentation()


def augmentation_of(model: nn.Module) -> Augmentation:
    """The augmentation ``model``'s checkpoint records (metadata ``test_time_augmentation``);
    none for a net whose checkpoint records none."""
    spec = metadata_of(model).test_time_augmentation
    if spec is None:
        return NO_AUGMENTATION
    return Augmentation.from_dict(spec)


def chosen_augmentation(
    model: nn.Module,
    flip: bool | None = None,
    scales: Sequence[float] | None = None,
    crf: CRF | bool | None = None,
) -> Augmentation:
    """``flip``, ``scales`` and ``crf`` where given (not None), the checkpoint's
    (:func:`augmentation_of`) where not. ``crf``: a :class:`~fcnseg.inference.crf.CRF`, True
    (the checkpoint's CRF, else the default one) or False (none)."""
    recorded = augmentation_of(model)
    if crf is None:
        chosen = recorded.crf
    elif isinstance(crf, CRF):
        chosen = crf
    elif isinstance(crf, bool):
        chosen = (recorded.crf or CRF()) if crf else None
    else:
        raise SegmentError(f"crf must be a CRF, True, False or None, got {crf!r}")
    return Augmentation(
        flip=recorded.flip if flip is None else bool(flip),
        scales=recorded.scales if scales is None else tuple(scales),
        crf=chosen,
    )


def softmax_(scores: Tensor) -> Tensor:
    """``scores.softmax(1)`` computed in place: a large tile's scores are not copied."""
    scores -= scores.amax(1, keepdim=True)
    scores.exp_()
    scores /= scores.sum(1, keepdim=True)
    return scores


def class_probabilities(
    model: nn.Module,
    batch: Tensor,
    preprocess: Preprocess,
    input_scale: float = 1.0,
    augmentation: Augmentation = NO_AUGMENTATION,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Per-pixel class probabilities, float32 ``(N, K, H, W)`` on ``batch``'s device.

    ``batch``: ``(N, C, H, W)`` raw values (uint8, or float on the 0..255 scale; RGB for colour
    images), already on the model's device. ``preprocess``: the checkpoint's normaliser
    (:func:`fcnseg.inference.predict.normalizer_for`). ``input_scale``: the net's own
    (:func:`fcnseg.inference.predict.input_scale_of`). ``dtype``: autocast (bfloat16, or
    float16 on CUDA); None runs float32. Each view is scored by
    :func:`fcnseg.inference.predict.class_scores`, one at a time; the augmentation's ``crf``
    then refines the views' mean on the net's input grid (:func:`fcnseg.inference.crf.refine`,
    with the batch's raw values as the colours). Call under ``torch.inference_mode()`` and
    with the net in eval mode.
    """
    total: Tensor | None = None
    for scale in augmentation.scales:
        for flip in (False, True) if augmentation.flip else (False,):
            scores = class_scores(model, batch, preprocess, input_scale * scale, dtype, flip)
            probabilities = softmax_(scores)  # (N, K, H, W)
            total = probabilities if total is None else total.add_(probabilities)
    assert total is not None  # Augmentation has at least one scale
    if augmentation.views > 1:
        total.div_(augmentation.views)
    if augmentation.crf is not None:
        total = refine(total, batch, augmentation.crf, input_scale)
    return total


__all__ = [
    "CRF",
    "NO_AUGMENTATION",
    "Augmentation",
    "SegmentError",
    "augmentation_of",
    "chosen_augmentation",
    "class_probabilities",
    "softmax_",
]
