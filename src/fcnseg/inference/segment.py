"""``fcnseg.segment``: the label map of whatever image a user has, in one call.

    model = fcnseg.load("camvid.pt")
    labels = fcnseg.segment(model, "street.jpg")          # (H, W) uint8 class indices

What an image may be, and what its values mean:

- a **path** (``str`` or ``os.PathLike``) to an image file: decoded by PIL, turned upright by
  its EXIF orientation, converted to RGB (grey, palette and RGBA images too; alpha dropped);
- a **PIL image**: likewise EXIF-transposed and converted to RGB;
- a **NumPy array** ``H x W x C`` (or ``H x W`` grey) of dtype uint8, values 0..255, RGB order
  (what PIL and imageio give; OpenCV's BGR must be reversed: ``array[..., ::-1]``); grey is
  replicated to RGB, a fourth (alpha) channel dropped;
- a **torch tensor** ``C x H x W``: uint8 0..255, or floating point on the same **0..255**
  scale (what fcnseg's dataset readers return; torchvision's ``to_tensor`` gives 0..1, multiply
  it by 255). An ``N x C x H x W`` tensor is a batch.

Nets with other than 3 input channels (RGB-D, HHA) take arrays or tensors with that many
channels. Each image gets the checkpoint's own preprocessing (its metadata's ``preprocessing``) and
input scale (``input_scale``), and the labels come back at the image's own size.

Images larger than ``tile_above`` pixels (4 MP) are scored in tiles (:mod:`fcnseg.inference.tiling`)
so memory grows with the image's width, not its area; ``tile=`` forces tiling. ``flip=`` and
``scales=`` average the probabilities of mirrored and rescaled views
(:mod:`fcnseg.inference.tta`), and ``crf=`` refines them (:mod:`fcnseg.inference.crf`; in
tiles, each tile on its own); by default those the checkpoint records. A list of images is
scored in batches of equal-size images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor, nn

from fcnseg.data.common import DatasetError, decode_image
from fcnseg.data.transforms import whole_image_preprocess
from fcnseg.inference.crf import CRF
from fcnseg.inference.predict import (
    Preprocess,
    SegmentError,
    class_scores,
    device_of,
    eval_mode,
    in_channels_of,
    input_scale_of,
    normalizer_for,
    num_classes_of,
)
from fcnseg.inference.tiling import TILE_ABOVE, TilePlan, plan_for, tiled_probabilities
from fcnseg.inference.tta import (
    Augmentation,
    chosen_augmentation,
    class_probabilities,
    softmax_,
)

logger = logging.getLogger(__name__)

ImageInput = Image.Image | np.ndarray | Tensor | str | os.PathLike
Result = Tensor | tuple[Tensor, Tensor]
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
ALPHA_CHANNELS = 4  # RGBA arrays: the alpha channel is dropped


# --------------------------------------------------------------------------- input coercion


def open_image(path: str | os.PathLike) -> Image.Image:
    """An image file decoded by PIL and turned upright by its EXIF orientation tag.

    Images over :func:`fcnseg.safe_files.max_pixels` are refused from their header, before
    decoding (decompression bombs)."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        raise SegmentError(
            f"{path} is a video; use fcnseg.inference.video.segment_video or fcnseg predict"
        )
    try:
        image = decode_image(path)  # refuses decompression bombs from the header
    except DatasetError as error:
        raise SegmentError(str(error)) from None
    return ImageOps.exif_transpose(image)


def _from_pil(image: Image.Image, channels: int) -> Tensor:
    image = ImageOps.exif_transpose(image)
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise SegmentError(
            f"the net takes {channels} input channels; give a {channels} x H x W tensor or an "
            f"H x W x {channels} array, not a PIL image"
        )
    array = np.asarray(image if image.mode == mode else image.convert(mode))
    return torch.from_numpy(array.reshape(*array.shape[:2], channels).copy()).permute(2, 0, 1)


def _from_array(array: np.ndarray, channels: int, what: str) -> Tensor:
    if array.dtype != np.uint8:
        raise SegmentError(
            f"{what}: arrays must be uint8 (0..255), got {array.dtype}; for floats pass "
            "torch.from_numpy(a).permute(2, 0, 1) on the 0..255 scale"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise SegmentError(f"{what}: arrays must be H x W x C or H x W, got shape {array.shape}")
    have = array.shape[2]
    if have == 1 and channels == 3:
        array = np.repeat(array, 3, axis=2)
    elif have == ALPHA_CHANNELS and channels == 3:
        array = array[:, :, :3]
    elif have != channels:
        hint = (
            " (it looks like C x H x W: arrays are H x W x C)" if array.shape[0] == channels else ""
        )
        raise SegmentError(
            f"{what}: array of shape {array.shape} has {have} channels; the net takes "
            f"{channels}{hint}"
        )
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def _from_tensor(tensor: Tensor, channels: int, what: str) -> Tensor:
    if tensor.ndim != 3:
        raise SegmentError(f"{what}: tensors must be C x H x W, got shape {tuple(tensor.shape)}")
    if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
        raise SegmentError(f"{what}: tensors must be uint8 or floating point, got {tensor.dtype}")
    if tensor.shape[0] != channels:
        hint = (
            " (it looks like H x W x C: permute(2, 0, 1))" if tensor.shape[-1] == channels else ""
        )
        raise SegmentError(
            f"{what}: tensor of shape {tuple(tensor.shape)} has {tensor.shape[0]} channels; the "
            f"net takes {channels}{hint}"
        )
    if tensor.is_floating_point() and tensor.numel() and 0 < float(tensor.max()) <= 1:
        logger.warning(
            "%s: float values lie in 0..1, but segment reads floats on the 0..255 scale; "
            "multiply by 255 if this is a to_tensor image",
            what,
        )
    return tensor


def as_tensor(image: ImageInput, channels: int = 3, what: str = "image") -> Tensor:
    """``image`` (see the module doc for each kind) as ``(C, H, W)`` raw values: uint8, or the
    caller's floating tensor (0..255 scale). Raises :class:`SegmentError` naming ``what``."""
    if isinstance(image, (str, os.PathLike)):
        return _from_pil(open_image(image), channels)
    if isinstance(image, Image.Image):
        return _from_pil(image, channels)
    if isinstance(image, np.ndarray):
        return _from_array(image, channels, what)
    if isinstance(image, Tensor):
        return _from_tensor(image, channels, what)
    raise SegmentError(
        f"{what}: cannot segment a {type(image).__name__}; give a path, a PIL image, an "
        "H x W x C uint8 array or a C x H x W tensor"
    )


# --------------------------------------------------------------------------- segmentation


def _labels_dtype(num_classes: int) -> torch.dtype:
    # uint8 where it fits: a 100-megapixel map is 100 MB, not 800 MB, and PIL writes it as is
    return torch.uint8 if num_classes <= 256 else torch.int64


def check_options(
    model: nn.Module,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    tile_above: int | None = TILE_ABOVE,
    flip: bool | None = None,
    scales: Sequence[float] | None = None,
    crf: CRF | bool | None = None,
    batch_size: int = 4,
    **_: object,
) -> None:
    """Raise :class:`SegmentError` for options :func:`segment` would refuse, before any work
    (callers that write files check first, so a bad flag writes nothing)."""
    if batch_size < 1:
        raise SegmentError(f"batch_size must be >= 1, got {batch_size}")
    if tile_above is not None and tile_above < 1:
        raise SegmentError(f"tile_above must be >= 1 or None, got {tile_above}")
    chosen_augmentation(model, flip, scales, crf)
    if tile is not None or overlap is not None:
        plan_for(model, input_scale_of(model), tile, overlap)


def segment(
    model: nn.Module,
    images: ImageInput | Sequence[ImageInput],
    *,
    probabilities: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    tile_above: int | None = TILE_ABOVE,
    flip: bool | None = None,
    scales: Sequence[float] | None = None,
    crf: CRF | bool | None = None,
    batch_size: int = 4,
    preprocess: Preprocess | None = None,
    dtype: torch.dtype | None = None,
    progress: Callable[[int], None] | None = None,
) -> Result | list[Result]:
    """The label map of each image, at the image's size (see the module doc for inputs).

    Returns, for one image, ``labels``: ``(H, W)`` class indices, uint8 when the net has at
    most 256 classes (else int64; use ``labels.long()`` to index with it), on the CPU; with
    ``probabilities=True`` the pair ``(labels, probabilities)``, the latter float32
    ``(K, H, W)``, summing to 1 over classes. For a list (or an ``N x C x H x W`` tensor), a
    list of those.

    - ``tile``, ``overlap``: score in ``tile x tile`` windows overlapping by ``overlap`` input
      pixels (default: half the net's receptive field); see :mod:`fcnseg.inference.tiling`.
    - ``tile_above``: images with more pixels are tiled even without ``tile`` (None: never).
    - ``flip``, ``scales``: test-time augmentation, probabilities averaged over the views;
      None (the default) takes the checkpoint's (:func:`fcnseg.inference.tta.augmentation_of`;
      none if it records none): ``flip=False, scales=(1,)`` scores one view.
    - ``crf``: refine the probabilities by a CRF (:mod:`fcnseg.inference.crf`): a ``CRF``,
      True (the checkpoint's, else the default) or False; None takes the checkpoint's.
    - ``batch_size``: images of equal size scored together (and, on CUDA, tiles of a band;
      on the CPU tiles go one at a time, which bounds memory).
    - ``preprocess``: overrides the checkpoint's normaliser; ``dtype``: autocast (bfloat16).
    - ``progress(n)``: called with the number of images finished after each batch.

    A list is decoded whole before scoring (to group equal sizes); for many files,
    :func:`fcnseg.inference.files.predict_images` streams them through a DataLoader.
    """
    check_options(model, tile=tile, overlap=overlap, tile_above=tile_above, flip=flip,
                  scales=scales, crf=crf, batch_size=batch_size)  # fmt: skip
    single = not isinstance(images, (list, tuple)) and not (
        isinstance(images, Tensor) and images.ndim == 4
    )
    items = [images] if single else list(images)
    channels = in_channels_of(model)
    tensors = [as_tensor(item, channels, _name(item, i)) for i, item in enumerate(items)]
    session = _Session(
        model,
        preprocess if preprocess is not None else normalizer_for(model),
        chosen_augmentation(model, flip, scales, crf),
        probabilities,
        dtype,
    )
    plan = plan_for(model, session.input_scale, tile, overlap) if tile is not None else None
    results: list[Result | None] = [None] * len(tensors)
    whole: dict[tuple[int, int], list[int]] = {}
    for index, tensor in enumerate(tensors):
        pixels = tensor.shape[-2] * tensor.shape[-1]
        if plan is None and tile_above is not None and pixels > tile_above:
            auto = plan_for(model, session.input_scale, None, overlap)
            logger.info(
                "%s: %d pixels > %d: tiles of %d",
                _name(items[index], index),
                pixels,
                tile_above,
                auto.tile,
            )
            results[index] = session.tiled(tensor, auto, batch_size)
        elif plan is not None:
            results[index] = session.tiled(tensor, plan, batch_size)
        else:
            whole.setdefault(tuple(tensor.shape[-2:]), []).append(index)
            continue
        if progress is not None:
            progress(1)
    for members in whole.values():
        for first in range(0, len(members), batch_size):
            chunk = members[first : first + batch_size]
            for index, result in zip(chunk, session.whole([tensors[i] for i in chunk])):
                results[index] = result
            if progress is not None:
                progress(len(chunk))
    return results[0] if single else results  # type: ignore[return-value]


def _name(item: object, index: int) -> str:
    return str(item) if isinstance(item, (str, os.PathLike)) else f"image {index}"


class _Session:
    """One call's settings: the net (in eval mode), its preprocessing and augmentation."""

    def __init__(
        self,
        model: nn.Module,
        preprocess: Preprocess,
        augmentation: Augmentation,
        keep_probabilities: bool,
        dtype: torch.dtype | None,
    ) -> None:
        self.model = model
        self.preprocess = preprocess
        self.augmentation = augmentation
        self.keep = keep_probabilities
        self.dtype = dtype
        self.input_scale = input_scale_of(model)
        self.num_classes = num_classes_of(model)
        self.device = device_of(model)

    def score(self, batch: Tensor, preprocess: Preprocess | None = None) -> Tensor:
        """(N, C, h, w) raw on the device -> (N, K, h, w) probabilities on the device;
        ``preprocess``: in place of the session's (a tile's: the whole image's)."""
        with torch.no_grad(), eval_mode(self.model):  # no_grad: outputs stay ordinary tensors
            return class_probabilities(
                self.model,
                batch,
                self.preprocess if preprocess is None else preprocess,
                self.input_scale,
                self.augmentation,
                self.dtype,
            )

    def whole(self, batch: list[Tensor]) -> list[Result]:
        """Equal-size images scored together as one batch. With one view the labels are the
        argmax of the raw scores, exactly :func:`~fcnseg.inference.predict.predict_image`'s."""
        stacked = torch.stack(batch).to(self.device)  # (N, C, H, W)
        probabilities: Tensor | None = None
        if self.augmentation.plain:
            with torch.no_grad(), eval_mode(self.model):
                scores = class_scores(
                    self.model, stacked, self.preprocess, self.input_scale, dtype=self.dtype
                )  # (N, K, H, W)
            labels = scores.argmax(1)
            if self.keep:
                probabilities = softmax_(scores)
        else:
            probabilities = self.score(stacked)
            labels = probabilities.argmax(1)
        labels = labels.to("cpu", _labels_dtype(self.num_classes))  # (N, H, W)
        if self.keep:
            return list(zip(labels, probabilities.cpu()))
        return list(labels)

    def tiled(self, image: Tensor, plan: TilePlan, batch_size: int) -> Result:
        """One image scored in tiles; only the outputs are image-sized."""
        height, width = image.shape[-2:]
        labels = torch.empty(height, width, dtype=_labels_dtype(self.num_classes))
        kept = torch.empty(self.num_classes, height, width) if self.keep else None

        def on_block(y: int, x: int, block: Tensor) -> None:  # block: (K, h, w)
            h, w = block.shape[-2:]
            labels[y : y + h, x : x + w] = block.argmax(0).to("cpu", labels.dtype)
            if kept is not None:
                kept[:, y : y + h, x : x + w] = block.cpu()

        # on the CPU a tile is work enough for every core: one at a time keeps memory down
        per_batch = batch_size if self.device.type == "cuda" else 1
        preprocess = whole_image_preprocess(self.preprocess, image)  # per-image statistics

        def score(tiles: Tensor) -> Tensor:
            return self.score(tiles, preprocess)

        tiled_probabilities(score, image, self.num_classes, plan, on_block, per_batch, self.device)
        return labels if kept is None else (labels, kept)


__all__ = ["ImageInput", "SegmentError", "as_tensor", "check_options", "open_image", "segment"]
