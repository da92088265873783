"""Convolutions with huge weights on small maps as one matrix multiply, forward and backward.

fc6 (7 x 7 x 512 -> 4096 in VGG16, a quarter of each at width 0.25) runs on pool5's few cells:
a 160 x 224 training crop gives 5 x 7 of them. On the CPU oneDNN's convolution reorders those
weights on every call (forward and both gradients), which costs more than the multiply itself;
its backward ran fc6 of the CamVid recipe at about a third of the machine's matmul rate. Here the
windows are read as a strided view of the padded channels-last input, laid out once as rows of
``kh kw C`` values, and

    forward     y  = windows @ W^T                  (N H W, O)
    backward    dW = dy^T @ windows                 (O, kh kw C)
                dx = the rows of dy @ W added back onto the pixels they were read from

``W`` is the weight as ``(O, kh, kw, C)``: for a channels-last weight a view, no copy. The sums
are those of a convolution in another order, so results equal ``Conv2d``'s up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Which convolutions :func:`matmul_convolutions` swaps: ungrouped ones with at least this many
# weights (VGG16's fc6 and fc7: 103 M and 17 M, at width 0.25 fc6's 6.4 M; AlexNet's fc6 and
# fc7 too; no 3 x 3 conv of VGG16, 2.4 M at most).
MATMUL_MIN_WEIGHTS = 1 << 22


def _windows_times_kernels(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    out_size: tuple[int, int],
    multiply: bool = True,
) -> tuple[Tensor | None, Tensor, Tensor, torch.Size]:
    """The convolution's output ``(N H W, O)`` (None without ``multiply``), its windows
    ``(N H W, kh kw C)``, kernels ``(O, kh kw C)`` and the padded input's shape."""
    n, c, _, _ = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw), (out_h, out_w) = stride, padding, dilation, out_size
    # (N, h + 2 ph, w + 2 pw, C): a copy of the (small) input, channels innermost
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))
    sn, sy, sx, sc = padded.stride()
    windows = padded.as_strided(
        (n, out_h, out_w, kh, kw, c), (sn, sy * sh, sx * sw, sy * dh, sx * dw, sc)
    ).reshape(n * out_h * out_w, kh * kw * c)
    kernels = weight.permute(0, 2, 3, 1).reshape(o, kh * kw * c)  # a view if channels-last
    if torch.is_autocast_enabled(x.device.type):  # in its precision, and saved so for backward
        dtype = torch.get_autocast_dtype(x.device.type)
        windows, kernels = windows.to(dtype), kernels.to(dtype)
    if not multiply:
        return None, windows, kernels, padded.shape
    out = windows @ kernels.t() if bias is None else torch.addmm(bias, windows, kernels.t())
    return out, windows, kernels, padded.shape


def _image_scores(
    image: Tensor, weight: Tensor, bias: Tensor | None, *conv: tuple[int, int]
) -> Tensor:
    """One image's output ``(O, H, W)`` without autograd: ``(O, kh kw C) @ (kh kw C, H W)``,
    the orientation of the unfold-based class this one replaced, which timed level with the
    training orientation or faster for fc6 at full width (a noisy micro-benchmark)."""
    _, windows, kernels, _ = _windows_times_kernels(
        image[None], weight, None, *conv, multiply=False
    )
    if bias is None:
        out = kernels @ windows.t()
    else:
        out = torch.addmm(bias.to(windows.dtype)[:, None], kernels, windows.t())
    return out.view(-1, *conv[-1])  # conv: stride, padding, dilation, output size


class _WindowMatmul(torch.autograd.Function):
    """``conv2d`` (zero padding, ungrouped) as a matrix multiply over the input's windows."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, out_size):  # noqa: ANN001
        out, windows, kernels, padded_shape = _windows_times_kernels(
            x, weight, bias, stride, padding, dilation, out_size
        )
        ctx.save_for_backward(windows, kernels)
        ctx.shapes = (x.shape, padded_shape, weight.shape, bias is not None)
        ctx.conv = (stride, padding, dilation, out_size)
        n, o, (out_h, out_w) = x.shape[0], weight.shape[0], out_size
        return out.view(n, out_h, out_w, o).permute(0, 3, 1, 2)  # channels-last (N, O, H, W)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001
        windows, kernels = ctx.saved_tensors
        x_shape, padded_shape, weight_shape, has_bias = ctx.shapes
        (sh, sw), (ph, pw), (dh, dw), (out_h, out_w) = ctx.conv
        n, c, h, w = x_shape
        o, _, kh, kw = weight_shape
        # (in the forward's precision: bfloat16 under autocast; autograd casts the gradients
        # back to each input's dtype)
        rows = grad_out.permute(0, 2, 3, 1).reshape(n * out_h * out_w, o).to(windows.dtype)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_windows = (rows @ kernels).view(n, out_h, out_w, kh, kw, c)
            grad_padded = grad_windows.new_zeros(padded_shape)
            for i in range(kh):  # each kernel tap adds its rows back where it read them
                for j in range(kw):
                    y0, x0 = i * dh, j * dw
                    grad_padded[
                        :, y0 : y0 + (out_h - 1) * sh + 1 : sh, x0 : x0 + (out_w - 1) * sw + 1 : sw
                    ] += grad_windows[:, :, :, i, j]
            grad_x = grad_padded[:, ph : ph + h, pw : pw + w].permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            grad_weight = (rows.t() @ windows).view(o, kh, kw, c).permute(0, 3, 1, 2)
        if has_bias and ctx.needs_input_grad[2]:
            grad_bias = rows.sum(0)
        return grad_x, grad_weight, grad_bias, None, None, None, None


class MatmulConv2d(nn.Conv2d):
    """A ``Conv2d`` computed as one matrix multiply over its windows, with its own backward;
    parameters and names unchanged (module docstring).

    Returns channels-last output for a channels-last input, contiguous otherwise. Grouped,
    non-zero-padded or string-padded convolutions fall back to ``Conv2d``, as do inputs too small
    for the kernel (``Conv2d`` raises its error).
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super()._conv_forward(input, weight, bias)
        if input.dim() != 4:  # unbatched: Conv2d's path
            return super()._conv_forward(input, weight, bias)
        _, _, h, w = input.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel_size, self.stride, self.padding, self.dilation
        )  # fmt: skip
        out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if out_h < 1 or out_w < 1:  # let Conv2d raise its error
            return super()._conv_forward(input, weight, bias)
        conv = ((sh, sw), (ph, pw), (dh, dw), (out_h, out_w))
        if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (input, weight, bias)
        ):
            out = _WindowMatmul.apply(input, weight, bias, *conv)
        else:  # scoring: one image's windows at a time, the memory of one
            out = torch.stack([_image_scores(image, weight, bias, *conv) for image in input])
        if input.is_contiguous(memory_format=torch.channels_last):
            return out.contiguous(memory_format=torch.channels_last)
        return out.contiguous()


def matmul_convolutions(model: nn.Module, enable: bool = True) -> int:
    """Make ``model``'s large-kernel ``Conv2d`` layers :class:`MatmulConv2d` (in place; or back
    to ``Conv2d`` with ``enable=False``); returns how many were changed.

    Large: ungrouped, with at least ``MATMUL_MIN_WEIGHTS`` weights. Their weights are stored
    channels-last (``(O, kh, kw, C)`` in memory, the order of the windows: no copy per call);
    names, values and ``state_dict`` are untouched.
    """
    changed = 0
    for module in model.modules():
        if enable and type(module) is nn.Conv2d:
            if module.groups == 1 and module.weight.numel() >= MATMUL_MIN_WEIGHTS:
                module.__class__ = MatmulConv2d
                weight = module.weight.data
                module.weight.data = weight.contiguous(memory_format=torch.channels_last)
                changed += 1
        elif not enable and type(module) is MatmulConv2d:
            module.__class__ = nn.Conv2d
            changed += 1
    return changed
