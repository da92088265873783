"""Coordinate mapping: where each layer's output pixels sit in the input image.

FCN (Long et al., section 4.1 and the reference's ``caffe.coord_map``) aligns a skip layer
with the upsampled coarse scores, and the final scores with the image, by cropping. The crop
offsets follow from the layer geometry: every convolution, pooling and transposed convolution
maps input coordinates affinely to output coordinates (pixel centres), and a chain of layers
composes those maps. Two blobs computed from the same image along different paths are aligned
by the difference of their shifts, provided their scales agree.

All arithmetic uses :class:`fractions.Fraction`, so offsets are exact, never rounded floats.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from torch import nn

# Layers that keep every pixel where it is.
_POINTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Dropout,
    nn.Dropout2d,
    nn.BatchNorm2d,
    nn.Identity,
    nn.Hardswish,
    nn.SiLU,
    nn.Sigmoid,
)


@dataclass(frozen=True)
class CoordMap:
    """The map ``out = scale * in + shift`` from one blob's pixel coordinates to another's."""

    scale: Fraction = Fraction(1)
    shift: Fraction = Fraction(0)

    def then(self, after: CoordMap) -> CoordMap:
        """The composed map: first ``self``, then ``after``."""
        return CoordMap(after.scale * self.scale, after.scale * self.shift + after.shift)

    def inverse(self) -> CoordMap:
        return CoordMap(1 / self.scale, -self.shift / self.scale)


IDENTITY = CoordMap()


def _pair_value(value: int | tuple[int, ...], what: str, module: nn.Module) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(
                f"{what}={value} of {module} differs between axes; only square is mapped"
            )
        value = value[0]
    return int(value)


def _window(module: nn.Module) -> tuple[int, int, int]:
    """(effective kernel size, stride, padding) of a convolution or pooling layer."""
    kernel = _pair_value(module.kernel_size, "kernel_size", module)
    stride = _pair_value(module.stride, "stride", module)
    padding = _pair_value(module.padding, "padding", module)
    dilation = _pair_value(getattr(module, "dilation", 1), "dilation", module)
    return dilation * (kernel - 1) + 1, stride, padding


def layer_coord_map(module: nn.Module) -> CoordMap:
    """The coordinate map of one layer (or of a ``nn.Sequential`` of layers).

    - convolution / pooling with kernel k, stride s, padding p:
      ``out = in / s + (p - (k - 1) / 2) / s``;
    - transposed convolution: ``out = s * in + (k - 1) / 2 - p``;
    - pointwise layers (ReLU, BatchNorm, dropout, ...): the identity.
    """
    if isinstance(module, nn.Sequential):
        return compose(module.children())
    if isinstance(module, nn.ConvTranspose2d):
        kernel, stride, padding = _window(module)
        return CoordMap(Fraction(stride), Fraction(kernel - 1, 2) - padding)
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        kernel, stride, padding = _window(module)
        return CoordMap(Fraction(1, stride), (padding - Fraction(kernel - 1, 2)) / stride)
    if isinstance(module, _POINTWISE):
        return IDENTITY
    coord_map = getattr(module, "coord_map", None)
    if callable(coord_map):
        return coord_map()
    raise TypeError(f"no coordinate map is known for {type(module).__name__}: {module}")


def compose(layers: Iterable[nn.Module]) -> CoordMap:
    """The coordinate map of layers applied one after another."""
    result = IDENTITY
    for layer in layers:
        result = result.then(layer_coord_map(layer))
    return result


def crop_offset(source: CoordMap, target: CoordMap) -> int:
    """The offset at which to crop ``source`` so that it lies on ``target``.

    Both maps go from the same input image to a blob. After cropping,
    ``source[offset + u]`` and ``target[u]`` see the same image point, for every ``u``.
    """
    if source.scale != target.scale:
        raise ValueError(f"cannot align blobs of different strides: {source} vs {target}")
    offset = source.shift - target.shift
    if offset.denominator != 1 or offset < 0:
        raise ValueError(
            f"crop offset {offset} is not a non-negative integer: {source} vs {target}"
        )
    return int(offset)


def receptive_field(layers: Iterable[nn.Module]) -> tuple[int, int]:
    """(receptive field size, stride) in input pixels of the last layer's output pixels."""
    size, stride = 1, 1
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            inner_size, inner_stride = receptive_field(layer.children())
            size += (inner_size - 1) * stride
            stride *= inner_stride
        elif isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel, layer_stride, _ = _window(layer)
            size += (kernel - 1) * stride
            stride *= layer_stride
    return size, stride
