"""In-network upsampling: backwards-strided convolution initialised to bilinear interpolation.

Section 3.3 of the paper: upsampling by a factor f is convolution with fractional input
stride 1/f, i.e. a transposed convolution with output stride f. Initialised to bilinear
interpolation it can stay fixed (the reference nets freeze it) or be learned.

The layer is a dense K x K transposed convolution, as in the reference nets: a bilinear weight
is diagonal across classes (class i only feeds class i), and the opt-in inference path
(:func:`fcnseg.inference.fast.per_class_upsampling`) runs it per class instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def bilinear_kernel(kernel_size: int) -> Tensor:
    """A 2-D bilinear interpolation kernel of shape (k, k), the one Caffe's FCN surgery uses.

    For ``k = 2 f`` (upsampling by f) the kernel is ``(1 - |x - c| / f)(1 - |y - c| / f)`` with
    centre ``c = f - 1/2``; the weights that land on any output pixel sum to one.
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64) - center).abs() / factor
    return torch.outer(taps, taps).float()


def bilinear_weight(channels: int, kernel_size: int) -> Tensor:
    """Weight (C, C, k, k) of a transposed convolution that upsamples each channel on its own."""
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = bilinear_kernel(kernel_size)
    return weight


class BilinearUpsample(nn.ConvTranspose2d):
    """A plain ``nn.ConvTranspose2d`` (C -> C, no bias) that marks a bilinear upsampling layer.

    It computes exactly what its parent does, in every mode; the class only lets tools find
    these layers (e.g. :func:`fcnseg.inference.fast.per_class_upsampling`, the opt-in path
    that runs a diagonal weight one class at a time).
    """


def bilinear_upsampling(channels: int, factor: int, learnable: bool = False) -> nn.ConvTranspose2d:
    """A transposed convolution (kernel 2f, stride f, no bias) initialised to bilinear upsampling.

    Output size for input size n: ``(n - 1) f + 2 f``. Frozen unless ``learnable``.
    """
    if factor < 1:
        raise ValueError(f"upsampling factor must be >= 1, got {factor}")
    layer = BilinearUpsample(channels, channels, 2 * factor, stride=factor, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_weight(channels, 2 * factor))
    layer.weight.requires_grad_(learnable)
    return layer
