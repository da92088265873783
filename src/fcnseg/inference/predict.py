"""Prediction: class scores and the label map of an image of any size, as a checkpoint says.

A fully convolutional net takes a whole image of any size and returns class scores of the same
size (Long et al., sections 3 and 4.1); the label of each pixel is the argmax over classes.

What a net needs to read an image comes from its checkpoint's ``meta`` (see ``checkpoint.py``):

- ``preprocessing``: a normaliser spec for :func:`fcnseg.data.transforms.normalizer_from_spec`.
  Missing, the Caffe BGR mean subtraction is used (what the original FCN models expect) and a
  warning is logged.
- ``classes`` and ``palette``: names and RGB colours, one per class. Missing (or of the wrong
  length), the classes are numbered ``"0" .. "K-1"`` and coloured with the VOC palette.
- ``input_scale``: the factor the training images were resized by (default 1); images are
  resized by it before scoring and the scores resized back, so labels keep the input's size.

:func:`class_scores` is the one function that applies a net to images: every prediction
(:func:`predict_image`, and through it scoring, ``fcnseg eval`` and validation;
:func:`fcnseg.segment`, its tiles and test-time views; ``fcnseg predict``) runs it.
Files and folders: :mod:`fcnseg.inference.files`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcnseg.data.palettes import voc_palette
from fcnseg.data.transforms import (
    CaffeMeanSubtract,
    Normalizer,
    normalized_channels,
    normalizer_from_spec,
    scaled_size,
)
from fcnseg.errors import FcnsegError, NonFiniteError
from fcnseg.inference.fast import autocast_to
from fcnseg.metadata import metadata_of
from fcnseg.models import FCNConfig, config_of
from fcnseg.models.ensemble import Ensemble

logger = logging.getLogger(__name__)

# A normaliser called as ``preprocess(image, None)``; only the image it returns is used.
Preprocess = Callable[[Tensor, Any], tuple[Tensor, Any]]
RGB_CHANNELS = 3  # image files are read as R, G, B


# --------------------------------------------------------------------------- checkpoint metadata


def num_classes_of(model: nn.Module) -> int:
    """The number of output classes of an FCN (its ``num_classes``, else its config's)."""
    count = getattr(model, "num_classes", None)
    if isinstance(count, int):
        return count
    return config_of(model).num_classes


def heads_of(model: nn.Module) -> dict[str, int]:
    """``{output name: classes}`` of a net with several named outputs, in output order (the
    two-headed SIFT Flow net: ``{"semantic": 33, "geometric": 3}``); ``{}`` for one output."""
    count = getattr(model, "num_classes", None)
    return {str(head): int(n) for head, n in count.items()} if isinstance(count, dict) else {}


def input_scale_of(model: nn.Module) -> float:
    """The factor its training images were resized by (metadata ``input_scale``, 1.0)."""
    return metadata_of(model).input_scale


def net_input_channels(model: nn.Module) -> int:
    """The channels the net itself takes, after preprocessing (its config's; an ensemble's
    whole input; 3 without a config)."""
    if isinstance(model, Ensemble):
        return model.input_channels
    config = getattr(model, "config", None)
    return config.in_channels if isinstance(config, FCNConfig) else RGB_CHANNELS


def in_channels_of(model: nn.Module) -> int:
    """The number of channels of the images the net scores (its config's; 3 without one).

    Counted before preprocessing: a net whose recorded preprocessing concatenates ``k``
    normalisations of the image (a ``ConcatNormalize``: "imagenet+per_image", or a split-input
    ensemble's) takes ``k C`` channels and reads ``C``-channel images."""
    spec = metadata_of(model).preprocessing
    if spec is None or spec.get("type") != "ConcatNormalize":
        return net_input_channels(model)
    return net_input_channels(model) // normalized_channels(normalizer_from_spec(spec), 1)


def normalizer_for(model: nn.Module, source: str = "model") -> Normalizer:
    """The normaliser of the metadata's ``preprocessing``, else ``CaffeMeanSubtract()`` (warned).

    ``source`` names the model in messages, e.g. the checkpoint's path.
    """
    spec = metadata_of(model).preprocessing
    if spec is None:
        logger.warning(
            "%s records no preprocessing; using the Caffe BGR mean subtraction "
            "(CaffeMeanSubtract), which the original FCN models expect",
            source,
        )
        return CaffeMeanSubtract()
    try:
        return normalizer_from_spec(spec)
    except (TypeError, ValueError) as error:
        raise FcnsegError(
            f"{source}: preprocessing {spec!r} is not a normaliser: {error}"
        ) from error


def class_names(model: nn.Module, source: str = "model") -> list[str]:
    """The metadata's ``classes`` if it has one name per class, else ``"0" .. "K-1"``."""
    count = num_classes_of(model)
    names = metadata_of(model).classes
    if names is not None and len(names) == count:
        return [str(name) for name in names]
    if names is not None:
        logger.warning(
            "%s lists %d class names for %d classes; numbering them", source, len(names), count
        )
    return [str(index) for index in range(count)]


def palette_for(model: nn.Module, source: str = "model") -> list[tuple[int, int, int]]:
    """One RGB colour per class: the metadata's ``palette``, filled up with the VOC palette."""
    count = num_classes_of(model)
    default = voc_palette(count)
    given = metadata_of(model).palette
    if given is None:
        return default
    colours = list(given)  # [r, g, b] in 0..255, checked by Metadata
    if len(colours) < count:
        logger.warning(
            "%s has %d palette colours for %d classes; the rest use the VOC palette",
            source,
            len(colours),
            count,
        )
        colours += default[len(colours) :]
    return colours[:count]  # type: ignore[return-value]


# --------------------------------------------------------------------------- one image


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, then the train/eval mode it had before."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def device_of(model: nn.Module) -> torch.device:
    """The device of the net's parameters (the CPU for a net without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class SegmentError(FcnsegError):
    """An image, argument or net that segmentation cannot take; the message names it."""


def class_scores(
    model: nn.Module,
    batch: Tensor,
    preprocess: Preprocess,
    scale: float = 1.0,
    dtype: torch.dtype | None = None,
    flip: bool = False,
) -> Tensor:
    """Raw class scores of a batch at its own size: float32 ``(N, K, H, W)``.

    The one place fcnseg applies a net to images: :func:`predict_image` (hence scoring,
    ``fcnseg eval`` and training's validation), :func:`fcnseg.segment`, its tiles and its
    test-time views all come here. ``batch``: ``(N, C, H, W)`` raw values (uint8, or float on
    the 0..255 scale), on the model's device. It is

    1. made float32 and normalised with ``preprocess`` (a normaliser such as
       :func:`normalizer_for` returns),
    2. resized bilinearly by ``scale`` when it is not 1 (a net trained on resized images,
       :func:`input_scale_of`; sizes by :func:`fcnseg.data.transforms.scaled_size`),
    3. mirrored left-right with ``flip``,
    4. scored by the net under autocast to ``dtype`` (bfloat16, or float16 on CUDA; None:
       float32), and the scores mirrored back and resized bilinearly to ``(H, W)``.

    Call with the net in eval mode, under ``torch.no_grad()`` or ``torch.inference_mode()``.
    Raises :class:`SegmentError` for a batch of the wrong shape, a bad scale or a net that does
    not return one score tensor, and :class:`fcnseg.errors.NonFiniteError` for NaN or inf scores.
    """
    raw, size = _forward(model, batch, preprocess, scale, dtype, flip)
    if not isinstance(raw, Tensor) or raw.ndim != 4:
        raise SegmentError(
            f"{type(model).__name__} returns {type(raw).__name__}, not one N x K x H x W "
            "score tensor; prediction takes single-task nets (head_scores: several heads)"
        )
    return _finish(raw, size, flip)  # (N, K, H, W)


def head_scores(
    model: nn.Module,
    batch: Tensor,
    preprocess: Preprocess,
    scale: float = 1.0,
    dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """:func:`class_scores` of a net with several named outputs (the two-headed SIFT Flow net):
    one run of the net, ``{head: float32 (N, K_head, H, W)}``, each head treated the same."""
    raw, size = _forward(model, batch, preprocess, scale, dtype, False)
    if not isinstance(raw, dict):
        raise SegmentError(f"{type(model).__name__} has one output; use class_scores")
    return {head: _finish(scores, size, False) for head, scores in raw.items()}


def _forward(
    model: nn.Module,
    batch: Tensor,
    preprocess: Preprocess,
    scale: float,
    dtype: torch.dtype | None,
    flip: bool,
) -> tuple[Any, tuple[int, int]]:
    """Steps 1-4 of :func:`class_scores` up to the net's raw output, and the batch's size."""
    if batch.ndim != 4:
        raise SegmentError(f"batch must be N x C x H x W, got shape {tuple(batch.shape)}")
    # the image's channels: the net's input over what the preprocessing makes of one channel
    channels = net_input_channels(model) // normalized_channels(preprocess, 1)
    if batch.shape[1] != channels:
        raise SegmentError(f"image has {batch.shape[1]} channels; the net takes {channels}")
    if not (math.isfinite(scale) and scale > 0):
        raise SegmentError(f"input scale must be a finite number > 0, got {scale}")
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    x = preprocess(batch.float(), None)[0]  # (N, C, H, W) normalised
    if scale != 1:  # (N, C, h, w): the full-size input is freed before the net runs
        x = F.interpolate(x, size=scaled_size(*size, scale), mode="bilinear", align_corners=False)
    if flip:
        x = x.flip(-1)
    with autocast_to(x.device, dtype):
        return model(x), size


def _finish(scores: Tensor, size: tuple[int, int], flip: bool) -> Tensor:
    """Raw (N, K, h, w) scores as float32, checked finite, mirrored back, at ``size``."""
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


@torch.inference_mode()
def predict_image(
    model: nn.Module,
    image: Tensor,
    preprocess: Preprocess,
    scale: float = 1.0,
    dtype: torch.dtype | None = None,
) -> Tensor | dict[str, Tensor]:
    """The label map of one image: int64 ``(H, W)`` class indices, on the model's device.

    ``image``: float ``(C, H, W)`` raw values as the dataset readers return them (RGB 0..255),
    any size. It is moved to the model's device and scored whole by :func:`class_scores` (as
    a batch of one, with ``preprocess``, ``scale`` and ``dtype``), in eval mode; the labels are
    the argmax of the raw scores. A net with several named outputs (the two-headed SIFT Flow
    net) gives one label map per output (:func:`head_scores`): ``{"semantic": (H, W), ...}``.
    """
    if image.ndim != 3:
        raise SegmentError(f"image must be C x H x W, got shape {tuple(image.shape)}")
    with eval_mode(model):
        batch = image[None].to(device_of(model))  # (1, C, H, W)
        if heads_of(model):
            scored = head_scores(model, batch, preprocess, scale, dtype)
            return {head: scores.argmax(1)[0] for head, scores in scored.items()}
        scores = class_scores(model, batch, preprocess, scale, dtype)  # (1, K, H, W)
    return scores.argmax(1)[0]  # (H, W)


__all__ = [
    "SegmentError",
    "class_names",
    "class_scores",
    "device_of",
    "eval_mode",
    "head_scores",
    "heads_of",
    "in_channels_of",
    "input_scale_of",
    "normalizer_for",
    "num_classes_of",
    "palette_for",
    "predict_image",
]
