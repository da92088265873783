"""Dense output from a coarse net: shift-and-stitch and filter rarefaction (section 3.2).

A net whose output stride is f gives one prediction per f x f block of pixels. Two ways to get
one per pixel without changing the filters:

- **shift-and-stitch**: run the net on the f^2 inputs shifted by (dy, dx) in {0..f-1}^2 and
  interlace the outputs, so output pixel (f i + dy, f j + dx) comes from shift (dy, dx), cell
  (i, j). Costs f^2 forward passes.
- **filter rarefaction** ("a trous"): give a stride-s layer stride 1 and dilate every later
  filter by s (enlarging the filters with zeros), so the net itself computes every shift.

On unpadded ("valid") layers both give the same numbers: each output pixel u sees the input
window that starts at u. With padded layers they differ only where windows meet the border.
Here a shift by (dy, dx) means dropping the first dy rows and dx columns of the input.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import Tensor, nn

from fcnseg.models.backbones.base import Backbone, Tap


def shift_and_stitch(net: Callable[[Tensor], Tensor], x: Tensor, stride: int) -> Tensor:
    """Interlace ``net``'s outputs on the ``stride``^2 shifted copies of ``x`` (N x C x H x W).

    ``net`` maps N x C x H x W to N x K x h x w with output stride ``stride``. The result is
    N x K x H' x W' where output pixel (f i + dy, f j + dx) is cell (i, j) of the shift
    (dy, dx); H' is the largest position any shift reaches, plus one.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    outputs = {}
    for dy in range(stride):
        for dx in range(stride):
            shifted = x[:, :, dy:, dx:]
            if shifted.shape[-2] == 0 or shifted.shape[-1] == 0:
                continue
            outputs[dy, dx] = net(shifted)
    if not outputs:
        raise ValueError(f"input {tuple(x.shape)} is too small for any shift")
    some = next(iter(outputs.values()))
    height = max(dy + stride * (o.shape[-2] - 1) for (dy, _), o in outputs.items()) + 1
    width = max(dx + stride * (o.shape[-1] - 1) for (_, dx), o in outputs.items()) + 1
    dense = some.new_full((*some.shape[:2], height, width), float("nan"))
    for (dy, dx), out in outputs.items():
        rows = range(dy, height, stride)[: out.shape[-2]]
        cols = range(dx, width, stride)[: out.shape[-1]]
        dense[:, :, rows.start : rows.stop : stride, cols.start : cols.stop : stride] = out[
            :, :, : len(rows), : len(cols)
        ]
    return dense


def _pair(value: int | tuple[int, int]) -> int:
    if isinstance(value, tuple):
        if value[0] != value[1]:
            raise ValueError(f"only square strides, paddings and dilations are supported: {value}")
        return value[0]
    return value


def rarefy(net: nn.Sequential, start: str | None = None) -> nn.Sequential:
    """A copy of ``net`` with the strides from layer ``start`` on removed, later filters dilated.

    Each convolution or max pooling at or after ``start`` (default: the first layer) with stride
    s gets stride 1; it and every later such layer is dilated (and its padding scaled) by the
    product of the strides removed before it. Weights are shared by copy, not changed. Works on
    any ``nn.Sequential`` of convolutions, max pooling and pointwise layers, including a
    :class:`~fcnseg.models.backbones.Backbone`, whose tap strides are updated.
    """
    dense = copy.deepcopy(net)
    names = [name for name, _ in dense.named_children()]
    if start is not None and start not in names:
        raise KeyError(f"no layer {start!r} in the net; layers: {names}")
    active = start is None
    rate = 1  # product of the strides removed so far
    rates = {}
    for name, layer in dense.named_children():
        active = active or name == start
        if not active:
            continue
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            stride = _pair(layer.stride)
            dilation = _pair(layer.dilation)
            padding = _pair(layer.padding)
            if isinstance(layer, nn.MaxPool2d) and layer.ceil_mode:
                layer.ceil_mode = False  # the dense net has no partial windows at the end
            layer.dilation = _as_layer_pair(layer, dilation * rate)
            layer.padding = _as_layer_pair(layer, padding * rate)
            layer.stride = _as_layer_pair(layer, 1)
            rate *= stride
        elif isinstance(layer, (nn.AvgPool2d, nn.ConvTranspose2d, nn.Sequential)):
            raise TypeError(f"cannot rarefy layer {name} ({type(layer).__name__})")
        rates[name] = rate
    if isinstance(dense, Backbone):
        dense.taps = tuple(
            Tap(t.name, t.layer, t.channels, max(1, t.stride // rates.get(t.layer, 1)))
            for t in dense.taps
        )
    return dense


def _as_layer_pair(layer: nn.Module, value: int) -> int | tuple[int, int]:
    return value if isinstance(layer, nn.MaxPool2d) else (value, value)
