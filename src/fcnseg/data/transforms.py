"""Paired image/label transforms and padded batching (class weights: ``class_weights.py``).

Every transform is a small class called as ``image, label = t(image, label)`` on one sample
from a dataset reader:

- ``image``: floating tensor ``C x H x W`` of raw values (RGB 0..255 in R, G, B order, then any
  extra channels such as depth or HHA; C is 1, 3, 4 or 6). The normalisers also accept a batch
  ``... x C x H x W``.
- ``label``: integer tensor ``H x W`` of class indices, or ``K x H x W`` for datasets with K label
  maps per image (e.g. semantic + geometric); one value (``ignore_index``, 255 by default) marks
  pixels that count for neither loss nor metrics.

Spatial transforms move image and label together: the image is resampled bilinearly and the
label by centre-aligned nearest neighbour (each output pixel takes the source pixel whose centre
is nearest, i.e. ``F.interpolate(mode="nearest-exact")``, computed by indexing so labels stay
exact integers). Padding fills the label with ``ignore_index`` and the image with ``image_pad``.

Randomness comes from an optional ``torch.Generator``; with one seeded, a sequence of calls is
reproducible. With ``generator=None`` the global RNG is used, which ``DataLoader`` seeds
differently in each worker; a seeded generator is copied, state and all, into every worker, so
all workers then draw the same augmentations unless each is re-seeded in ``worker_init_fn``.

Preprocessing follows two conventions (FCN paper, section 4.1 / 4.3):

- ``CaffeMeanSubtract``: what the original FCN Caffe models expect, BGR order minus the
  per-channel BGR mean of ILSVRC, values left in 0..255.
- ``ImageNetNormalize``: what torchvision's ImageNet backbones expect, RGB scaled to 0..1, minus
  mean, divided by standard deviation.

Beyond them, ``Normalize`` is the general per-channel form, ``PerImageNormalize`` standardises
each image by its own statistics, and ``ConcatNormalize`` stacks several normalisers' outputs for
an ensemble whose members were trained with different ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CAFFE_MEAN_BGR",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CaffeMeanSubtract",
    "CenterCrop",
    "Compose",
    "ConcatNormalize",
    "ImageNetNormalize",
    "Normalize",
    "PerImageNormalize",
    "RandomHorizontalFlip",
    "RandomScaleCrop",
    "Resize",
    "image_statistics",
    "normalizer_from_spec",
    "whole_image_preprocess",
    "collate_pad",
]

IGNORE_INDEX = 255  # label value ignored by loss and metrics (PASCAL VOC's "void")
# ILSVRC mean in BGR order, 0..255, as shipped with the reference FCN Caffe models.
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
# torchvision's ImageNet statistics, RGB order, on values scaled to 0..1.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Pair = tuple[Tensor, Tensor]
PadValue = float | Sequence[float]


# --------------------------------------------------------------------------- checks and helpers


def _check_image(image: Tensor, who: str, batched: bool = False) -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"{who}: image must be a torch.Tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(
            f"{who}: image dtype must be floating point (raw values as float32), got {image.dtype}"
        )
    if image.ndim < 3 or (not batched and image.ndim != 3):
        shape = "... x C x H x W" if batched else "C x H x W"
        raise ValueError(f"{who}: image must be {shape}, got shape {tuple(image.shape)}")


def _check_pair(image: Tensor, label: Tensor, who: str) -> None:
    _check_image(image, who)
    if not isinstance(label, Tensor) or label.is_floating_point() or label.is_complex():
        raise TypeError(f"{who}: label must be an integer tensor of class indices")
    if label.ndim not in (2, 3):
        raise ValueError(f"{who}: label must be H x W or K x H x W, got shape {tuple(label.shape)}")
    if label.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"{who}: label size {tuple(label.shape[-2:])} differs from image size "
            f"{tuple(image.shape[-2:])}"
        )


def _check_generator(generator: torch.Generator | None) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")


def _size_pair(crop_size: int | Sequence[int]) -> tuple[int, int]:
    """``crop_size`` as ``(height, width)``; an int means a square."""
    size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in size):
        raise ValueError(f"crop_size must be an int or (height, width) of ints, got {crop_size!r}")
    if min(size) < 1:
        raise ValueError(f"crop_size must be positive (>= 1 pixel), got {crop_size!r}")
    return size  # type: ignore[return-value]


def _pad_fill(image: Tensor, image_pad: PadValue) -> Tensor:
    """The image pad value as a tensor broadcastable to ``C x H x W``: one value or one per
    channel."""
    fill = torch.as_tensor(image_pad, dtype=image.dtype, device=image.device)
    channels = image.shape[-3]
    if fill.ndim == 1 and fill.numel() != channels:
        raise ValueError(
            f"image_pad has {fill.numel()} values but the image has {channels} channels; "
            f"give one value or one per channel"
        )
    if fill.ndim > 1:
        raise ValueError(f"image_pad must be a number or a sequence of numbers, got {image_pad!r}")
    return fill.reshape(-1, 1, 1)


def _pad_to(
    image: Tensor, label: Tensor, height: int, width: int, image_pad: PadValue, ignore_index: int
) -> Pair:
    """Pad bottom/right up to at least ``height x width``: image with ``image_pad``, label with
    ``ignore_index``."""
    h, w = image.shape[-2:]
    if h >= height and w >= width:
        return image, label
    out_h, out_w = max(h, height), max(w, width)
    padded = _pad_fill(image, image_pad).expand(image.shape[0], out_h, out_w).clone()
    padded[:, :h, :w] = image
    padded_label = label.new_full((*label.shape[:-2], out_h, out_w), ignore_index)
    padded_label[..., :h, :w] = label
    return padded, padded_label


def _nearest_indices(in_size: int, out_size: int, device: torch.device) -> Tensor:
    """Source index of each output pixel, centre-aligned: ``floor((i + 0.5) * in / out)``, the
    rule of ``F.interpolate(mode="nearest-exact")`` and of bilinear with ``align_corners=False``."""
    idx = ((torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * in_size) / out_size
    return idx.floor().long().clamp_(max=in_size - 1)


def _resize_pair(image: Tensor, label: Tensor, height: int, width: int) -> Pair:
    """Image bilinear (no antialiasing), label by centre-aligned nearest neighbour."""
    h, w = image.shape[-2:]
    if (h, w) == (height, width):
        return image, label
    image = F.interpolate(
        image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=False
    )[0]  # (C, height, width)
    rows = _nearest_indices(h, height, label.device)
    cols = _nearest_indices(w, width, label.device)
    label = label[..., rows[:, None], cols[None, :]]  # ([K,] height, width)
    return image, label


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """``(round(h * scale), round(w * scale))``, half rounding up, at least 1 pixel: the size
    of an image resized by ``scale``, wherever fcnseg resizes (augmentation, predict, eval)."""
    return max(1, math.floor(h * scale + 0.5)), max(1, math.floor(w * scale + 0.5))


def _check_channel_values(values: Sequence[float], name: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError(f"{name} must hold at least one value")
    return values


def _per_channel(values: Sequence[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).reshape(-1, 1, 1)


# --------------------------------------------------------------------------- normalisation


class Normalize:
    """Per-channel ``(image * scale - mean) / std`` for an image of exactly ``len(mean)`` channels.

    The generic form behind the two conventions below; use it directly for depth-only (C=1) or
    other non-RGB inputs. ``mean`` and ``std`` are in the units after ``scale``. Works on one
    image ``C x H x W`` or a batch ``... x C x H x W``; the label is returned unchanged.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float] | None = None, scale: float = 1.0
    ) -> None:
        self.mean = _check_channel_values(mean, "mean")
        self.std = (1.0,) * len(self.mean) if std is None else _check_channel_values(std, "std")
        if len(self.std) != len(self.mean):
            raise ValueError(
                f"std has {len(self.std)} values but mean has {len(self.mean)}; "
                f"give one per channel"
            )
        if min(self.std) <= 0:
            raise ValueError(f"std values must be > 0, got {self.std}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_image(image, type(self).__name__, batched=True)
        if image.shape[-3] != len(self.mean):
            raise ValueError(
                f"{type(self).__name__}: image has {image.shape[-3]} channels, expected "
                f"{len(self.mean)} (one per mean value)"
            )
        out = (image * self.scale - _per_channel(self.mean, image)) / _per_channel(self.std, image)
        return out, label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std}, scale={self.scale})"

    def spec(self) -> dict:
        """Constructor arguments and ``type``, for :func:`normalizer_from_spec`."""
        return {
            "type": "Normalize",
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
        }


class CaffeMeanSubtract:
    """The reference FCN Caffe preprocessing: RGB -> BGR, minus the BGR mean, no scaling.

    Input: image ``C x H x W`` (or ``... x C x H x W``) with R, G, B in channels 0..2 as 0..255.
    Output: channels 0..2 are ``B - mean_bgr[0], G - mean_bgr[1], R - mean_bgr[2]`` (roughly
    -123..151). Extra channels (C > 3, e.g. depth or HHA) keep their position after the colour
    channels: with ``extra_mean=None`` they pass through unchanged and any C >= 3 is accepted;
    with ``extra_mean`` given, C must be exactly ``3 + len(extra_mean)`` and each extra channel
    has its mean (in its own raw units) subtracted.
    """

    def __init__(
        self,
        mean_bgr: Sequence[float] = CAFFE_MEAN_BGR,
        extra_mean: Sequence[float] | None = None,
    ) -> None:
        self.mean_bgr = _check_channel_values(mean_bgr, "mean_bgr")
        if len(self.mean_bgr) != 3:
            raise ValueError(f"mean_bgr must have 3 values (B, G, R), got {len(self.mean_bgr)}")
        self.extra_mean = (
            None if extra_mean is None else _check_channel_values(extra_mean, "extra_mean")
        )

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_image(image, "CaffeMeanSubtract", batched=True)
        _check_rgb_channels(image, self.extra_mean, "CaffeMeanSubtract")
        bgr = image[..., [2, 1, 0], :, :] - _per_channel(self.mean_bgr, image)
        extra = image[..., 3:, :, :]
        if self.extra_mean is not None:
            extra = extra - _per_channel(self.extra_mean, image)
        return torch.cat([bgr, extra], dim=-3), label

    def __repr__(self) -> str:
        return f"CaffeMeanSubtract(mean_bgr={self.mean_bgr}, extra_mean={self.extra_mean})"

    def spec(self) -> dict:
        extra = None if self.extra_mean is None else list(self.extra_mean)
        return {"type": "CaffeMeanSubtract", "mean_bgr": list(self.mean_bgr), "extra_mean": extra}


class ImageNetNormalize:
    """torchvision's ImageNet preprocessing: RGB scaled by ``1 / max_value`` to 0..1, minus
    ``mean``, divided by ``std`` (output roughly -2.1..2.6), channel order kept as R, G, B.

    Extra channels (C > 3) are treated as in :class:`CaffeMeanSubtract`: passed through unchanged
    with ``extra_mean=None``, else C must be ``3 + len(extra_mean)`` and each extra channel becomes
    ``(x - extra_mean) / extra_std`` in its own raw units (not divided by ``max_value``;
    ``extra_std`` defaults to 1).
    """

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        max_value: float = 255.0,
        extra_mean: Sequence[float] | None = None,
        extra_std: Sequence[float] | None = None,
    ) -> None:
        if not max_value > 0:
            raise ValueError(f"max_value must be > 0 (255 for 8-bit images), got {max_value}")
        self.rgb = Normalize(mean, std, scale=1.0 / max_value)
        if len(self.rgb.mean) != 3:
            raise ValueError(f"mean and std must have 3 values (R, G, B), got {len(self.rgb.mean)}")
        self.max_value = float(max_value)
        if extra_mean is None and extra_std is not None:
            raise ValueError("extra_std was given without extra_mean; give both or neither")
        self.extra = None if extra_mean is None else Normalize(extra_mean, extra_std)

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_image(image, "ImageNetNormalize", batched=True)
        extra_mean = None if self.extra is None else self.extra.mean
        _check_rgb_channels(image, extra_mean, "ImageNetNormalize")
        rgb, _ = self.rgb(image[..., :3, :, :], label)
        extra = image[..., 3:, :, :]
        if self.extra is not None:
            extra, _ = self.extra(extra, label)
        return torch.cat([rgb, extra], dim=-3), label

    def __repr__(self) -> str:
        extra = (
            ""
            if self.extra is None
            else f", extra_mean={self.extra.mean}, extra_std={self.extra.std}"
        )
        return (
            f"ImageNetNormalize(mean={self.rgb.mean}, std={self.rgb.std}, "
            f"max_value={self.max_value}{extra})"
        )

    def spec(self) -> dict:
        return {
            "type": "ImageNetNormalize",
            "mean": list(self.rgb.mean),
            "std": list(self.rgb.std),
            "max_value": self.max_value,
            "extra_mean": None if self.extra is None else list(self.extra.mean),
            "extra_std": None if self.extra is None else list(self.extra.std),
        }


class PerImageNormalize:
    """Each image's channels standardised by that image's own statistics: ``(x - m) / (s +
    eps)`` with ``m`` and ``s`` the mean and standard deviation of the channel over the image.

    What a new sequence changes most, the light (exposure, white balance, contrast), it removes
    before the net sees it: a frame and the same frame brighter, darker or tinted normalise to
    the same input (up to clipping). Statistics are per image of a batch ``... x C x H x W``, so
    scoring a whole image applies exactly what training applied to whole frames; tiles of a
    large image are normalised with the whole image's statistics (:func:`whole_image_preprocess`).
    """

    def __init__(self, eps: float = 1.0) -> None:
        if not eps > 0:
            raise ValueError(f"eps must be > 0 (in the image's raw units), got {eps}")
        self.eps = float(eps)

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_image(image, "PerImageNormalize", batched=True)
        mean, std = image_statistics(image)  # (..., C, 1, 1)
        return (image - mean) / (std + self.eps), label

    def fixed_for(self, image: Tensor) -> Normalize:
        """The fixed normaliser this one is for ``image`` (``C x H x W``): a :class:`Normalize`
        with its statistics, to apply to parts of it (tiles) as to the whole."""
        if image.ndim != 3:
            shape = tuple(image.shape)
            raise ValueError(f"PerImageNormalize: image must be C x H x W, got shape {shape}")
        mean, std = image_statistics(image)  # uint8 is fine: the statistics are float32
        return Normalize(mean.flatten().tolist(), (std.flatten() + self.eps).tolist())

    def __repr__(self) -> str:
        return f"PerImageNormalize(eps={self.eps})"

    def spec(self) -> dict:
        return {"type": "PerImageNormalize", "eps": self.eps}


class ConcatNormalize:
    """Several normalisers applied to the same image, their outputs concatenated along the
    channels in order: ``C x H x W`` in, ``len(parts) * C x H x W`` out (``... x C x H x W``
    batches alike).

    The input of an ensemble whose members were trained with different preprocessing
    (:class:`fcnseg.models.ensemble.Ensemble` with ``split_input``): member ``i`` reads the
    channels of part ``i``, so each sees the whole image normalised exactly as it was trained,
    before any resizing. ``parts``: normalisers, or their specs.
    """

    def __init__(self, parts: Sequence[Normalizer | Mapping[str, Any]]) -> None:
        self.parts = [normalizer_from_spec(p) if isinstance(p, Mapping) else p for p in parts]
        if not self.parts:
            raise ValueError("ConcatNormalize needs at least one normaliser in parts")

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_image(image, "ConcatNormalize", batched=True)
        return torch.cat([part(image, label)[0] for part in self.parts], dim=-3), label

    def fixed_for(self, image: Tensor) -> ConcatNormalize:
        """This normaliser as it applies to parts (tiles) of ``image``: each part's
        :func:`whole_image_preprocess`."""
        return ConcatNormalize([whole_image_preprocess(part, image) for part in self.parts])

    def __repr__(self) -> str:
        return f"ConcatNormalize({self.parts})"

    def spec(self) -> dict:
        return {"type": "ConcatNormalize", "parts": [part.spec() for part in self.parts]}


def image_statistics(image: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (population) standard deviation of each image, ``... x C x 1 x 1``,
    in float32 whatever the image's dtype."""
    values = image.float()
    std, mean = torch.std_mean(values, dim=(-2, -1), correction=0, keepdim=True)
    return mean, std


Normalizer = Normalize | CaffeMeanSubtract | ImageNetNormalize | PerImageNormalize | ConcatNormalize


def normalized_channels(normalizer: Normalizer, channels: int) -> int:
    """How many channels ``normalizer`` makes of an image with ``channels``: a
    :class:`ConcatNormalize` its parts' together, any other as many as it is given."""
    if isinstance(normalizer, ConcatNormalize):
        return sum(normalized_channels(part, channels) for part in normalizer.parts)
    return channels


def whole_image_preprocess(preprocess: Callable, image: Tensor) -> Callable:
    """``preprocess`` as it applies to parts of ``image`` (``C x H x W``): a
    :class:`PerImageNormalize` fixed to the whole image's statistics (inside a
    :class:`ConcatNormalize` too), anything else as it is."""
    if isinstance(preprocess, (PerImageNormalize, ConcatNormalize)):
        return preprocess.fixed_for(image)
    return preprocess


def normalizer_from_spec(spec: dict) -> Normalizer:
    """Rebuild a normaliser from its ``spec()`` (as stored in checkpoints' ``meta``)."""
    kinds = {"Normalize": Normalize, "CaffeMeanSubtract": CaffeMeanSubtract}
    kinds["ImageNetNormalize"] = ImageNetNormalize
    kinds["PerImageNormalize"] = PerImageNormalize
    kinds["ConcatNormalize"] = ConcatNormalize
    arguments = dict(spec)
    kind = arguments.pop("type", None)
    if kind not in kinds:
        raise ValueError(f"unknown normaliser type {kind!r}; known: {sorted(kinds)}")
    return kinds[kind](**arguments)


def _check_rgb_channels(image: Tensor, extra_mean: Sequence[float] | None, who: str) -> None:
    channels = image.shape[-3]
    if extra_mean is None and channels < 3:
        raise ValueError(
            f"{who}: image has {channels} channels, expected at least 3 (R, G, B first); "
            f"for depth-only input use Normalize(mean=...)"
        )
    if extra_mean is not None and channels != 3 + len(extra_mean):
        raise ValueError(
            f"{who}: image has {channels} channels, expected {3 + len(extra_mean)} "
            f"(3 RGB + {len(extra_mean)} for extra_mean)"
        )


# --------------------------------------------------------------------------- colour transforms


class ColorJitter:
    """Random brightness, contrast, saturation and hue of an RGB image in raw units (0..255),
    before preprocessing; the label is unchanged (frames of a new sequence differ in light and
    colour).

    Each factor is uniform in ``[1 - amount, 1 + amount]`` (``amount`` 0 leaves it out and draws
    nothing): brightness scales the image, contrast blends it with its mean grey, saturation
    with each pixel's grey (ITU-R 601 luma). Hue turns each pixel's chroma by an angle uniform in
    ``[-hue, hue]`` turns (``hue`` in [0, 0.5]; 0.5: any angle): a rotation of the I-Q plane of
    YIQ, linear in RGB, which keeps every pixel's luma and leaves grey pixels grey (a cheaper
    cousin of an HSV hue shift). Applied in that order and clamped to 0..255. Last, ``gamma``
    bends the tone curve, ``255 (x / 255) ** g`` with ``g = (1 + gamma) ** u``, ``u`` uniform in
    ``[-1, 1]`` (so ``g`` and ``1 / g`` are equally likely): shadows and mid-tones lighten or
    darken while black and white stay, as another camera's exposure and tone mapping would.
    Channels after the first three (depth, HHA) are left alone.
    """

    LUMA = (0.299, 0.587, 0.114)
    # RGB -> YIQ (FCC NTSC); Y is LUMA
    YIQ = ((0.299, 0.587, 0.114), (0.5959, -0.2746, -0.3213), (0.2115, -0.5227, 0.3112))

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        generator: torch.Generator | None = None,
        hue: float = 0.0,
        gamma: float = 0.0,
    ) -> None:
        for name, amount in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            if not 0.0 <= amount < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {amount}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5] (turns of the colour circle), got {hue}")
        if not 0.0 <= gamma <= 3.0:
            raise ValueError(
                f"gamma must be in [0, 3] (exponents 1/(1+gamma)..1+gamma), got {gamma}"
            )
        _check_generator(generator)
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.hue, self.gamma = hue, gamma
        self.generator = generator

    @classmethod
    def hue_matrix(cls, turns: float) -> Tensor:
        """The 3 x 3 RGB matrix that turns chroma by ``turns`` of the circle, luma kept."""
        angle = 2.0 * math.pi * turns
        cos, sin = math.cos(angle), math.sin(angle)
        rotate = torch.tensor(
            [[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]], dtype=torch.float64
        )
        yiq = torch.tensor(cls.YIQ, dtype=torch.float64)
        return torch.linalg.inv(yiq) @ rotate @ yiq

    def _factor(self, amount: float) -> float:
        if amount == 0:
            return 1.0
        draw = torch.rand(1, generator=self.generator).item()
        return 1.0 - amount + 2.0 * amount * draw

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_pair(image, label, "ColorJitter")
        if image.shape[0] < 3:
            raise ValueError(f"ColorJitter needs an RGB image, got {image.shape[0]} channel(s)")
        rgb = image[:3] * self._factor(self.brightness)
        contrast = self._factor(self.contrast)
        if contrast != 1.0:
            grey = torch.tensordot(torch.tensor(self.LUMA, dtype=rgb.dtype), rgb, 1).mean()
            rgb = (rgb - grey) * contrast + grey
        saturation = self._factor(self.saturation)
        if saturation != 1.0:
            grey = torch.tensordot(torch.tensor(self.LUMA, dtype=rgb.dtype), rgb, 1)
            rgb = (rgb - grey) * saturation + grey
        if self.hue > 0:
            turns = self.hue * (2.0 * torch.rand(1, generator=self.generator).item() - 1.0)
            rgb = torch.tensordot(self.hue_matrix(turns).to(rgb.dtype), rgb, 1)
        rgb = rgb.clamp(0.0, 255.0)
        if self.gamma > 0:
            exponent = (1.0 + self.gamma) ** (
                2.0 * torch.rand(1, generator=self.generator).item() - 1.0
            )
            rgb = (rgb / 255.0).pow(exponent) * 255.0
        return torch.cat([rgb, image[3:]]) if image.shape[0] > 3 else rgb, label

    def __repr__(self) -> str:
        return (
            f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue}, gamma={self.gamma})"
        )


class PasteClasses:
    """Copy-paste of chosen classes from another frame (Ghiasi et al. 2021's simple copy-paste,
    at the donor's own position): with probability ``p``, a donor drawn uniformly from
    ``donors`` (a dataset of raw ``(image, label)`` pairs), mirrored with probability 0.5 and
    resized to the image's size if it differs, gives the image its pixels and labels wherever
    its label is one of ``class_ids``. Thin, rare classes (poles, signs, pedestrians) then
    appear in more frames, in front of other backgrounds and under other light.

    Draws (from ``generator``): one number, then, when it pastes, the donor and the mirroring.
    Use it on the raw image, before colour jitter and preprocessing.
    """

    def __init__(
        self,
        donors: Sequence[Pair],
        class_ids: Sequence[int],
        p: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        if not class_ids:
            raise ValueError("class_ids must name at least one class to paste")
        if len(donors) == 0:
            raise ValueError("donors is empty: nothing to paste from")
        _check_generator(generator)
        self.donors, self.class_ids, self.p = donors, tuple(int(c) for c in class_ids), float(p)
        self.generator = generator

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_pair(image, label, "PasteClasses")
        if label.ndim != 2:
            raise ValueError(
                f"PasteClasses: label must be H x W (one head), got shape {tuple(label.shape)}"
            )
        if torch.rand(1, generator=self.generator).item() >= self.p:
            return image, label
        index = int(torch.randint(len(self.donors), (1,), generator=self.generator).item())
        donor_image, donor_label = self.donors[index]
        if donor_image.shape[0] != image.shape[0]:
            raise ValueError(
                f"PasteClasses: donor {index} has {donor_image.shape[0]} channels, the image "
                f"{image.shape[0]}"
            )
        if torch.rand(1, generator=self.generator).item() < 0.5:
            donor_image, donor_label = donor_image.flip(-1), donor_label.flip(-1)
        donor_image, donor_label = _resize_pair(
            donor_image.to(image.dtype), donor_label, *image.shape[-2:]
        )
        mask = torch.isin(donor_label, torch.tensor(self.class_ids, dtype=donor_label.dtype))
        image = torch.where(mask, donor_image, image)
        label = torch.where(mask, donor_label.to(label.dtype), label)
        return image, label

    def __repr__(self) -> str:
        return f"PasteClasses(class_ids={self.class_ids}, p={self.p}, donors={len(self.donors)})"


class CutMix:
    """A box of another frame, image and labels, in place of the frame's (CutMix: Yun et al.,
    ICCV 2019; for segmentation, French et al., BMVC 2020): with probability ``p``, a donor drawn
    uniformly from ``donors`` (raw ``(image, label)`` pairs, resized to the image's size if it
    differs) gives the pixels of a box at the same place. As in CutMix, ``lam`` is uniform in
    [0, 1] and the box has the frame's aspect ratio and ``1 - lam`` of its area, its centre
    uniform over the frame and its edges clipped to it. A class then stands beside what another
    scene, sequence or light puts next to it, so the net cannot lean on a scene's layout.

    Draws (from ``generator``): one number, then, when it mixes, the donor, ``lam`` and the
    centre's row and column. Use it on the raw image, before colour jitter and preprocessing.
    """

    def __init__(
        self, donors: Sequence[Pair], p: float = 0.5, generator: torch.Generator | None = None
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        if len(donors) == 0:
            raise ValueError("donors is empty: nothing to mix from")
        _check_generator(generator)
        self.donors, self.p, self.generator = donors, float(p), generator

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Draw ``lam`` and the centre: the box's rows ``top:bottom`` and columns
        ``left:right``."""
        lam, cy, cx = torch.rand(3, generator=self.generator, dtype=torch.float64).tolist()
        side = math.sqrt(1.0 - lam)
        half_h, half_w = height * side / 2, width * side / 2
        cy, cx = cy * height, cx * width
        top, bottom = round(max(cy - half_h, 0.0)), round(min(cy + half_h, height))
        left, right = round(max(cx - half_w, 0.0)), round(min(cx + half_w, width))
        return top, bottom, left, right

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_pair(image, label, "CutMix")
        if torch.rand(1, generator=self.generator).item() >= self.p:
            return image, label
        index = int(torch.randint(len(self.donors), (1,), generator=self.generator).item())
        donor_image, donor_label = self.donors[index]
        if donor_image.shape[0] != image.shape[0] or donor_label.ndim != label.ndim:
            raise ValueError(
                f"CutMix: donor {index} has {donor_image.shape[0]} channels and "
                f"{donor_label.ndim}-d labels, the image {image.shape[0]} and {label.ndim}-d"
            )
        donor_image, donor_label = _resize_pair(
            donor_image.to(image.dtype), donor_label, *image.shape[-2:]
        )
        top, bottom, left, right = self.box(*image.shape[-2:])
        image, label = image.clone(), label.clone()
        image[..., top:bottom, left:right] = donor_image[..., top:bottom, left:right]
        label[..., top:bottom, left:right] = donor_label[..., top:bottom, left:right].to(
            label.dtype
        )
        return image, label

    def __repr__(self) -> str:
        return f"CutMix(p={self.p}, donors={len(self.donors)})"


# --------------------------------------------------------------------------- spatial transforms


class RandomHorizontalFlip:
    """Mirror image and label left-right together with probability ``p`` (0..1)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        _check_generator(generator)
        self.p = float(p)
        self.generator = generator

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_pair(image, label, "RandomHorizontalFlip")
        if torch.rand(1, generator=self.generator).item() < self.p:
            return image.flip(-1), label.flip(-1)
        return image, label

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomScaleCrop:
    """Scale by a random factor, pad up to ``crop_size``, then take a random ``crop_size`` crop.

    The factor is uniform in ``scale_range`` (e.g. 0.5..2.0); the scaled size is
    ``round(H * s) x round(W * s)``. Where that is smaller than ``crop_size`` the pair is padded at
    the bottom/right: the label with ``ignore_index``, the image with ``image_pad`` (one value or
    one per channel). The default 0.0 is right after mean subtraction (0 is the mean colour); to
    pad raw images, pass the mean in raw units, e.g. ``image_pad=(122.7, 116.7, 104.0)`` for RGB.
    Output: image ``C x crop_h x crop_w``, label ``[K x] crop_h x crop_w``.

    ``crop_size`` is an int (square) or ``(height, width)`` in pixels. Per call it draws one
    uniform (the scale) and then the crop's top and left offsets, in that order.

    ``max_class_share`` below 1 redraws the offsets (at most ``attempts`` draws in all, the scale
    kept) while one class holds more than that share of the crop's labelled pixels, or none is
    labelled; the last draw stands if none passes (``cat_max_ratio`` of MMSegmentation's
    ``RandomCrop``). It steers crops away from all-road and all-sky views towards the scene's
    smaller things. A ``K x H x W`` label is judged by its first channel. At 1 nothing is
    redrawn: the draws are those of the plain crop.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int],
        scale_range: Sequence[float] = (0.5, 2.0),
        ignore_index: int = IGNORE_INDEX,
        image_pad: PadValue = 0.0,
        generator: torch.Generator | None = None,
        max_class_share: float = 1.0,
        attempts: int = 10,
    ) -> None:
        self.crop_size = _size_pair(crop_size)
        if not 0 < max_class_share <= 1:
            raise ValueError(f"max_class_share must be in (0, 1], got {max_class_share!r}")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts!r}")
        self.max_class_share, self.attempts = float(max_class_share), int(attempts)
        scale_range = tuple(float(s) for s in scale_range)
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(
                f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}"
            )
        _check_generator(generator)
        self.scale_range = scale_range
        self.ignore_index = int(ignore_index)
        self.image_pad = image_pad
        self.generator = generator

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_pair(image, label, "RandomScaleCrop")
        low, high = self.scale_range
        scale = low + (high - low) * torch.rand(1, generator=self.generator).item()
        image, label = _resize_pair(image, label, *scaled_size(*image.shape[-2:], scale))
        crop_h, crop_w = self.crop_size
        image, label = _pad_to(image, label, crop_h, crop_w, self.image_pad, self.ignore_index)
        h, w = image.shape[-2:]
        for _ in range(self.attempts if self.max_class_share < 1 else 1):
            top = int(torch.randint(0, h - crop_h + 1, (1,), generator=self.generator))
            left = int(torch.randint(0, w - crop_w + 1, (1,), generator=self.generator))
            crop = label[..., top : top + crop_h, left : left + crop_w]
            if self.max_class_share == 1 or (
                largest_class_share(crop, self.ignore_index) <= self.max_class_share
            ):
                break
        return image[:, top : top + crop_h, left : left + crop_w], crop

    def __repr__(self) -> str:
        share = f", max_class_share={self.max_class_share}" if self.max_class_share < 1 else ""
        return (
            f"RandomScaleCrop(crop_size={self.crop_size}, scale_range={self.scale_range}, "
            f"ignore_index={self.ignore_index}, image_pad={self.image_pad!r}{share})"
        )


def largest_class_share(label: Tensor, ignore_index: int = IGNORE_INDEX) -> float:
    """The largest class's share of ``label``'s labelled pixels (the first channel of a
    ``K x H x W`` label); 1.0 where no pixel is labelled."""
    semantic = label[0] if label.ndim == 3 else label
    counts = torch.unique(semantic[semantic != ignore_index], return_counts=True)[1]
    return int(counts.max()) / int(counts.sum()) if counts.numel() else 1.0


class CenterCrop:
    """Deterministic ``crop_size`` crop from the centre (top/left offset ``(H - crop_h) // 2``),
    after padding bottom/right as in :class:`RandomScaleCrop` when the image is smaller."""

    def __init__(
        self,
        crop_size: int | Sequence[int],
        ignore_index: int = IGNORE_INDEX,
        image_pad: PadValue = 0.0,
    ) -> None:
        self.crop_size = _size_pair(crop_size)
        self.ignore_index = int(ignore_index)
        self.image_pad = image_pad

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_pair(image, label, "CenterCrop")
        crop_h, crop_w = self.crop_size
        image, label = _pad_to(image, label, crop_h, crop_w, self.image_pad, self.ignore_index)
        h, w = image.shape[-2:]
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        return (
            image[:, top : top + crop_h, left : left + crop_w],
            label[..., top : top + crop_h, left : left + crop_w],
        )

    def __repr__(self) -> str:
        return (
            f"CenterCrop(crop_size={self.crop_size}, ignore_index={self.ignore_index}, "
            f"image_pad={self.image_pad!r})"
        )


class Resize:
    """Scale both by a fixed factor keeping aspect: ``round(H * scale) x round(W * scale)``.

    For training or evaluating at lower resolution on a CPU (e.g. ``scale=0.5``). Note that
    metrics computed on resized labels differ slightly from those at the original resolution.
    """

    def __init__(self, scale: float) -> None:
        if not (isinstance(scale, int | float) and scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        _check_pair(image, label, "Resize")
        return _resize_pair(image, label, *scaled_size(*image.shape[-2:], self.scale))

    def __repr__(self) -> str:
        return f"Resize(scale={self.scale})"


class Compose:
    """Apply paired transforms in order: ``Compose([RandomScaleCrop(...), ...])(image, label)``."""

    def __init__(self, transforms: Sequence[Callable[[Tensor, Tensor], Pair]]) -> None:
        self.transforms = list(transforms)
        for index, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"transforms[{index}] is not callable: {t!r}")

    def __call__(self, image: Tensor, label: Tensor) -> Pair:
        for t in self.transforms:
            image, label = t(image, label)
        return image, label

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


# --------------------------------------------------------------------------- batching


def collate_pad(
    batch: Sequence[Pair], ignore_index: int = IGNORE_INDEX, image_pad: PadValue = 0.0
) -> Pair:
    """Stack whole images of different sizes by padding each bottom/right to the largest H, W.

    ``batch``: N >= 1 pairs ``(C x H_i x W_i image, [K x] H_i x W_i label)`` with the same C (and
    K). Returns ``(N x C x Hmax x Wmax images, N x [K x] Hmax x Wmax labels)``; image padding is
    ``image_pad`` (one value or one per channel; 0 is the mean colour after mean subtraction),
    label padding ``ignore_index`` so padded pixels count for neither loss nor metrics.

    Use as ``DataLoader(..., collate_fn=functools.partial(collate_pad, ignore_index=255))``. With
    ``batch_size=1`` (the paper's setting) nothing needs padding and the default collate works
    too; ``collate_pad`` gives the same result there.
    """
    if len(batch) == 0:
        raise ValueError("collate_pad: batch is empty; need at least one (image, label) pair")
    for index, (image, label) in enumerate(batch):
        _check_pair(image, label, f"collate_pad: batch[{index}]")
    image0, label0 = batch[0]
    for index, (image, label) in enumerate(batch):
        if image.shape[0] != image0.shape[0] or label.shape[:-2] != label0.shape[:-2]:
            raise ValueError(
                f"collate_pad: batch[{index}] has image channels {image.shape[0]} and label "
                f"maps {tuple(label.shape[:-2])}, but batch[0] has {image0.shape[0]} and "
                f"{tuple(label0.shape[:-2])}; all samples must agree"
            )
    height = max(image.shape[-2] for image, _ in batch)
    width = max(image.shape[-1] for image, _ in batch)
    padded = [
        _pad_to(image, label, height, width, image_pad, ignore_index) for image, label in batch
    ]
    return torch.stack([p[0] for p in padded]), torch.stack([p[1] for p in padded])
