"""Class probabilities of a batch, with optional test-time augmentation (flips and scales).

One function, :func:`class_probabilities`, turns raw images into per-pixel class
probabilities at the images' own size; tiled inference (:mod:`fcnseg.inference.tiling`) and
:func:`fcnseg.segment` both call it. Each *view* of the batch is

1. normalised with the checkpoint's preprocessing,
2. resized bilinearly by ``input_scale * s`` for each test scale ``s`` (the net's own input
   scale, the metadata's ``input_scale``, times the augmentation's),
3. optionally mirrored left-right,
4. scored by the net, mirrored back, resized bilinearly to the input size, and soft-maxed.

The probabilities of all views are averaged (as mmsegmentation's ``aug_test`` does). Scores
are resized before the softmax, as :func:`fcnseg.inference.predict.predict_image` does, so
with no augmentation the argmax is the same label map.

A flip costs one more pass of the net; scales ``(0.75, 1, 1.25)`` cost about
``0.75² + 1 + 1.25² = 3.1`` passes at scale 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcnseg.errors import FcnsegError, NonFiniteError
from fcnseg.inference.fast import autocast_to
from fcnseg.inference.predict import Preprocess


class SegmentError(FcnsegError):
    """An image, argument or net that segmentation cannot take; the message names it."""


@dataclass(frozen=True)
class Augmentation:
    """Test-time augmentation: ``scales`` (factors on top of the net's input scale, each
    finite and > 0) and ``flip`` (also score the left-right mirror image)."""

    flip: bool = False
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        scales = tuple(float(s) for s in self.scales)
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise SegmentError(f"scales must be finite numbers > 0, at least one; got {scales}")
        object.__setattr__(self, "scales", scales)

    @property
    def views(self) -> int:
        """How many passes of the net one image costs (at differing sizes)."""
        return len(self.scales) * (2 if self.flip else 1)


NO_AUGMENTATION = Augmentation()


def parse_tta(names: Sequence[str]) -> bool:
    """``--tta`` values as the ``flip`` flag; ``flip`` is the one augmentation by name."""
    unknown = [name for name in names if name != "flip"]
    if unknown:
        raise SegmentError(f"unknown --tta {unknown}; known: flip (scales: --scales)")
    return "flip" in names


def _scaled(size: tuple[int, int], factor: float) -> list[int]:
    return [max(1, math.floor(side * factor + 0.5)) for side in size]


def _scores(
    model: nn.Module, x: Tensor, size: tuple[int, int], flip: bool, dtype: torch.dtype | None
) -> Tensor:
    """Net scores of the normalised ``x`` (N, C, h, w), resized to ``size``: (N, K, H, W)."""
    if flip:
        x = x.flip(-1)
    with autocast_to(x.device, dtype):
        scores = model(x)
    if not isinstance(scores, Tensor) or scores.ndim != 4:
        raise SegmentError(
            f"{type(model).__name__} returns {type(scores).__name__}, not one N x K x H x W "
            "score tensor; segment takes single-task nets"
        )
    scores = scores.float()  # (N, K, h, w)
    if not bool(torch.isfinite(scores).all()):
        raise NonFiniteError(
            "the net's scores hold NaN or inf values (damaged or diverged weights, or an "
            "overflow in reduced precision)"
        )
    if flip:
        scores = scores.flip(-1)
    if tuple(scores.shape[-2:]) != size:
        scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    return scores  # (N, K, H, W)


def _softmax_(scores: Tensor) -> Tensor:
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
    float16 on CUDA); None runs float32. Call under ``torch.inference_mode()`` and with the
    net in eval mode.
    """
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    x = preprocess(batch.float(), None)[0]  # (N, C, H, W) normalised
    views = [
        x
        if factor == 1
        else F.interpolate(x, size=_scaled(size, factor), mode="bilinear", align_corners=False)
        for factor in (input_scale * scale for scale in augmentation.scales)
    ]
    del x  # a tile's full-size input is not kept while the net runs on a smaller view
    total: Tensor | None = None
    while views:
        view = views.pop(0)
        for flip in (False, True) if augmentation.flip else (False,):
            probabilities = _softmax_(_scores(model, view, size, flip, dtype))
            total = probabilities if total is None else total.add_(probabilities)
        del view
    assert total is not None  # Augmentation has at least one scale
    return total.div_(augmentation.views) if augmentation.views > 1 else total


__all__ = [
    "NO_AUGMENTATION",
    "Augmentation",
    "SegmentError",
    "class_probabilities",
    "parse_tta",
]
