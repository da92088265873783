"""Prediction: a label map for an image of any size, written as an indexed PNG and an overlay.

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

:func:`predict_files` walks files and folders (not recursively; image extensions of
``IMAGE_EXTENSIONS``, sorted) and writes, for each image, into one output folder:

- ``<stem>.png``: the label map as an indexed ("P") PNG whose values are class indices and
  whose palette is the net's palette;
- ``<stem>_overlay.png``: the RGB image with the class colours blended in.

Output names must be unique: two inputs with the same stem (e.g. ``a/x.jpg`` and ``b/x.png``),
or an input named like another's overlay (``x_overlay.png``), raise before anything is written,
compared case-insensitively so that a run behaves the same on every file system. So does an
output that would overwrite an input image. An image that cannot be decoded does not stop the
run: it is recorded in :attr:`PredictResult.failed` (with a message naming the file) and the
others are written.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from fcnseg.data.common import IMAGE_EXTENSIONS, DatasetError, read_rgb
from fcnseg.data.palettes import voc_palette
from fcnseg.data.transforms import (
    CaffeMeanSubtract,
    Normalizer,
    normalizer_from_spec,
    scaled_size,
)
from fcnseg.errors import FcnsegError, InputNotFoundError, NonFiniteError
from fcnseg.inference.fast import autocast_to
from fcnseg.inference.visualize import label_image, overlay
from fcnseg.metadata import metadata_of
from fcnseg.models import FCNConfig, config_of

logger = logging.getLogger(__name__)

# A normaliser called as ``preprocess(image, None)``; only the image it returns is used.
Preprocess = Callable[[Tensor, Any], tuple[Tensor, Any]]
RGB_CHANNELS = 3  # image files are read as R, G, B


# --------------------------------------------------------------------------- checkpoint metadata


def num_classes_of(model: nn.Module) -> int:
    """The number of output classes of an FCN (its ``num_classes``, else its config's).

    A net with several heads reports its main head's count from its config (the semantic head
    of the SIFT Flow net, ``num_classes``); :func:`heads_of` names them all.
    """
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


def in_channels_of(model: nn.Module) -> int:
    """The number of input channels the net was built for (its config's; 3 without one)."""
    config = getattr(model, "config", None)
    return config.in_channels if isinstance(config, FCNConfig) else RGB_CHANNELS


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
    any size; it is moved to the model's device, normalised with ``preprocess`` (a normaliser
    such as :func:`normalizer_for` returns) and scored whole, as a batch of one. With
    ``scale`` != 1 (a net trained on resized images, :func:`input_scale_of`) the image is
    resized by it first and the scores resized back to ``(H, W)``, both bilinearly.
    ``dtype`` (bfloat16, or float16 on CUDA) runs the net under autocast; None: float32.
    A net with several named outputs (the two-headed SIFT Flow net) gives one label map per
    output: ``{"semantic": (H, W), "geometric": (H, W)}``.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be C x H x W, got shape {tuple(image.shape)}")
    channels = in_channels_of(model)
    if image.shape[0] != channels:
        raise ValueError(f"image has {image.shape[0]} channels; the net takes {channels}")
    if not (math.isfinite(scale) and scale > 0):
        raise FcnsegError(f"input scale must be a finite number > 0, got {scale}")
    size = image.shape[-2:]
    device = device_of(model)
    with eval_mode(model):
        x = image.to(device=device, dtype=torch.float32)
        x = preprocess(x, None)[0][None]  # (1, C, H, W)
        if scale != 1:
            scaled = scaled_size(*size, scale)
            x = F.interpolate(x, size=scaled, mode="bilinear", align_corners=False)
        with autocast_to(device, dtype):
            scores = model(x)  # (1, K, h, w), or {head: (1, K_head, h, w)}
        if isinstance(scores, dict):
            return {head: _label_map(s, size) for head, s in scores.items()}
        return _label_map(scores, size)


def _label_map(scores: Tensor, size: torch.Size) -> Tensor:
    """(1, K, h, w) scores to the (H, W) label map at ``size``, scaled bilinearly if needed;
    :class:`NonFiniteError` if a score is NaN or infinite."""
    scores = scores.float()
    if not bool(torch.isfinite(scores).all()):
        raise NonFiniteError(
            "the net's scores hold NaN or inf values (damaged or diverged weights, or an "
            "overflow in reduced precision)"
        )
    if scores.shape[-2:] != size:
        scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    return scores.argmax(1)[0]  # (H, W)


# --------------------------------------------------------------------------- files and folders


@dataclass
class PredictResult:
    """What :func:`predict_files` did: ``written`` (image, label PNG, overlay PNG) per image
    and ``failed`` (image, message naming it) per image that could not be read."""

    written: list[tuple[Path, Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def list_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, and each folder's image files (not recursive, sorted); each file once.

    Raises ``InputNotFoundError`` naming an input that does not exist and ``FcnsegError`` naming
    a folder without images.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for entry in map(Path, inputs):
        if entry.is_dir():
            files = sorted(
                p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise FcnsegError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {entry}")
        elif entry.is_file():
            files = [entry]
        else:
            raise InputNotFoundError(f"input {entry} does not exist")
        for path in files:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append(path)
    return found


def output_paths(images: Sequence[Path], out_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(out_dir/<stem>.png, out_dir/<stem>_overlay.png)`` per image; raises on any clash.

    A clash is two images wanting one output name (compared case-insensitively) or an output
    that is one of the images; the message names both files.
    """
    out_dir = Path(out_dir)
    owners: dict[str, Path] = {}
    paths = []
    for image in images:
        names = (f"{image.stem}.png", f"{image.stem}_overlay.png")
        for name in names:
            other = owners.setdefault(name.casefold(), image)
            if other != image:
                raise FcnsegError(
                    f"{other} and {image} would both write {out_dir / name}; "
                    "rename one or predict them into separate --out folders"
                )
        paths.append((out_dir / names[0], out_dir / names[1]))
    inputs = {image.resolve(): image for image in images}
    for label_path, overlay_path in paths:
        for path in (label_path, overlay_path):
            if path.resolve() in inputs:
                raise FcnsegError(
                    f"writing {path} would overwrite the input image {inputs[path.resolve()]}; "
                    "choose another output folder"
                )
    return paths


def predict_files(
    model: nn.Module,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    preprocess: Preprocess | None = None,
    alpha: float = 0.5,
    progress: Callable[..., Any] | None = None,
    dtype: torch.dtype | None = None,
) -> PredictResult:
    """Predict every image of ``inputs`` (files and folders) into ``out_dir``; see the module doc.

    ``preprocess`` defaults to :func:`normalizer_for` ``(model)``; ``alpha`` (0..1) is the
    colour's share of the overlay; ``progress(total=n)`` makes a progress bar (e.g. ``tqdm``);
    ``dtype`` as in :func:`predict_image`.
    Images are read as RGB (grey and RGBA converted), so the net must take 3 channels. Setup
    problems (inputs, names, alpha, channels) raise before anything is written. A net with
    several heads writes its main (first) head's labels: the semantic one of SIFT Flow's.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in 0..1, got {alpha}")
    channels = in_channels_of(model)
    if channels != RGB_CHANNELS:
        raise FcnsegError(
            f"the net takes {channels} input channels, but predict reads image files as RGB "
            f"({RGB_CHANNELS} channels); score such data with evaluate on its dataset reader"
        )
    images = list_images(inputs)
    targets = output_paths(images, out_dir)
    if preprocess is None:
        preprocess = normalizer_for(model)
    palette = palette_for(model)
    scale = input_scale_of(model)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    result = PredictResult()
    bar = progress(total=len(images)) if progress is not None else None
    try:
        with eval_mode(model):
            for image_path, (label_path, overlay_path) in zip(images, targets):
                try:
                    # as viewers show it: EXIF orientation applied
                    image = read_rgb(image_path, apply_exif=True)  # (3, H, W) float32 0..255
                except DatasetError as error:
                    result.failed.append((image_path, str(error)))
                    logger.debug("skipped %s: %s", image_path, error)
                else:
                    try:
                        label = predict_image(model, image, preprocess, scale, dtype)  # (H, W)
                    except NonFiniteError as error:  # the net, not the image: stop
                        raise NonFiniteError(f"{image_path}: {error}") from None
                    if isinstance(label, dict):  # several heads: the main one's labels
                        label = next(iter(label.values()))
                    label = label.cpu()
                    label_image(label, palette).save(label_path)
                    Image.fromarray(overlay(image, label, palette, alpha)).save(overlay_path)
                    result.written.append((image_path, label_path, overlay_path))
                    logger.info("%s -> %s, %s", image_path, label_path, overlay_path)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return result


__all__ = [
    "PredictResult",
    "class_names",
    "device_of",
    "eval_mode",
    "in_channels_of",
    "input_scale_of",
    "list_images",
    "normalizer_for",
    "num_classes_of",
    "output_paths",
    "palette_for",
    "predict_files",
    "predict_image",
]
