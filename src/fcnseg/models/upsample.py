"""In-network upsampling: backwards-strided convolution initialised to bilinear interpolation.

Section 3.3 of the paper: upsampling by a factor f is convolution with fractional input
stride 1/f, i.e. a transposed convolution with output stride f. Initialised to bilinear
interpolation it can stay fixed (the reference nets freeze it) or be learned.

A bilinear weight is diagonal across classes (class i only feeds class i), so while it stays
diagonal and no gradient for it is wanted, :class:`BilinearUpsample` runs it per class
(``groups=K``, K times fewer multiply-adds) instead of as a dense K x K transposed convolution.
The parameter keeps the dense (K, K, k, k) shape, so checkpoints and exports are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    """``nn.ConvTranspose2d`` (C -> C, no bias) with a per-class fast path for diagonal weights.

    ``forward`` calls ``conv_transpose2d(x, weight[i, i], groups=C)`` when the weight is
    diagonal and either frozen or grad mode is off: the same sums without the zero terms, equal
    to the dense path up to float rounding. A learned weight in training, one with off-diagonal
    terms, and tracing, scripting, ``torch.compile`` and ONNX export take the dense path.
    The diagonal is cached against the weight's storage and version counter, so it is
    re-checked after ``load_state_dict``, ``.to()`` or an optimizer step.
    """

    per_class = True  # set False to force the dense path (benchmarks, comparisons)

    def _diagonal(self) -> Tensor | None:
        """The (C, 1, k, k) grouped weight, or None when the dense path must run."""
        weight = self.weight
        if (
            not self.per_class
            or self.in_channels != self.out_channels
            or self.groups != 1
            or self.bias is not None
            or (weight.requires_grad and torch.is_grad_enabled())
            or weight.is_meta  # shape-only runs (FLOP counts) keep the dense op
            or torch.jit.is_scripting()
            or torch.jit.is_tracing()
            or torch.compiler.is_compiling()
            or torch.onnx.is_in_onnx_export()
        ):
            return None
        try:
            key = (weight.data_ptr(), weight._version, weight.device, weight.dtype)
        except RuntimeError:  # an inference tensor has no version counter: check every time
            key = None
        cached = getattr(self, "_diagonal_cache", None)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad():
            channels = self.in_channels
            eye = torch.eye(channels, dtype=torch.bool, device=weight.device)
            diagonal = None
            if not weight[~eye].any():  # (C*(C-1), k, k) off-diagonal kernels all zero
                diagonal = weight[eye].unsqueeze(1).detach().clone()  # (C, 1, k, k)
        self._diagonal_cache = (key, diagonal) if key is not None else None
        return diagonal

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        diagonal = self._diagonal() if output_size is None else None
        if diagonal is None:
            return super().forward(x, output_size)
        return F.conv_transpose2d(  # (N, C, (h - 1) s + k - 2p, ...), one kernel per class
            x,
            diagonal,
            None,
            self.stride,
            self.padding,
            self.output_padding,
            self.in_channels,
            self.dilation,
        )


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
