"""MobileNetV3-Large (Howard et al. 2019) as an FCN backbone, for cheap training on the CPU.

Not in the FCN paper; the FCN-8s head goes on it unchanged. Laid out as torchvision's
``mobilenet_v3_large().features``: blocks ``0`` ... ``16`` with the same inner names
(``3.block.0.0.weight``: expand conv, ``.1``: its BatchNorm; ``block.2.fc1``: squeeze-excitation),
so a torchvision state dict loads after :func:`from_torchvision_mobilenet_v3` strips its
``features.`` prefix and drops the classifier. Channels follow torchvision's width rule
(multiples of 8). Taps: ``features_6`` (stride 8, 40 channels), ``features_12`` (16, 112) and
``features_16`` (32, 960).

Geometry. Every convolution is padded "same" (k // 2), so each tap's map is ``x / stride``.
Squeeze-excitation multiplies each channel by a gate computed from the global average: it
moves no pixel (identity map) and is left out of the receptive field, which counts windows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from torch import Tensor, nn

from fcnseg.models.backbones.base import Backbone, Tap, check_size
from fcnseg.models.geometry import IDENTITY, CoordMap, compose, receptive_field

# (kernel, expanded, out, squeeze-excitation, hard-swish, stride) of blocks 1 ... 15.
MOBILENET_V3_LARGE = (
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),  # stride 4
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),  # stride 8
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),  # block 6: tap at stride 8
    (3, 240, 80, False, True, 2),  # stride 16
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),  # block 12: tap at stride 16
    (5, 672, 160, True, True, 2),  # stride 32
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
)
STEM_CHANNELS = 16
LAST_EXPANSION = 6  # block 16: a 1x1 convolution to 6 x 160 = 960 channels
TAP_BLOCKS = {6: 8, 12: 16, 16: 32}  # block index -> stride
BN_EPS, BN_MOMENTUM = 0.001, 0.01  # torchvision's for MobileNetV3


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: the nearest multiple of 8, never below 90% of value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type | None = None
) -> nn.Sequential:
    """Convolution (padded "same"), BatchNorm, activation: torchvision's Conv2dNormActivation."""
    layers = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """``x * hardsigmoid(fc2(relu(fc1(mean of x))))``: a channel gate; pixels stay put."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # (N, C, 1, 1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(gate)

    def coord_map(self) -> CoordMap:
        return IDENTITY


class InvertedResidual(nn.Module):
    """1x1 expand, depthwise k x k (with the stride), optional squeeze-excitation, 1x1 project;
    the input is added back when the shape is kept. ``(N, cin, h, w) -> (N, cout, h/s, w/s)``.
    """

    def __init__(
        self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hs: bool, stride: int
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_bn_act(cin, expanded, 1, act=act))
        layers.append(conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(conv_bn_act(expanded, cout, 1))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout
        self.out_channels = cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out

    def coord_map(self) -> CoordMap:
        path = compose(self.block.children())
        if self.use_res_connect and path != IDENTITY:
            raise ValueError(f"residual path {path} is not aligned with its input")
        return path

    def receptive_field(self) -> tuple[int, int]:
        """(size, stride) of an output pixel: the block's (the shortcut's is 1 pixel)."""
        return receptive_field(self.block.children())


class MobileNetV3Large(Backbone):
    """MobileNetV3-Large ``features`` 0 ... 16; taps ``features_6`` (stride 8),
    ``features_12`` (16) and ``features_16`` (32).

    Args:
        in_channels: input channels (3 for RGB).
        width: torchvision's ``width_mult``: multiplies the channels, rounded to multiples of 8.
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0) -> None:
        check_size(in_channels, width)
        channels = make_divisible(STEM_CHANNELS * width)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["0"] = conv_bn_act(
            in_channels, channels, 3, 2, act=nn.Hardswish
        )  # (N, 16, h/2, w/2)
        for index, (kernel, expanded, out, se, hs, stride) in enumerate(MOBILENET_V3_LARGE, 1):
            expanded, out = make_divisible(expanded * width), make_divisible(out * width)
            layers[str(index)] = InvertedResidual(channels, kernel, expanded, out, se, hs, stride)
            channels = out
        last = LAST_EXPANSION * channels
        layers["16"] = conv_bn_act(channels, last, 1, act=nn.Hardswish)  # (N, 960, h/32, w/32)
        super().__init__(layers)
        tap_channels = {6: layers["6"].out_channels, 12: layers["12"].out_channels, 16: last}
        self.taps = tuple(
            Tap(f"features_{block}", str(block), tap_channels[block], stride)
            for block, stride in TAP_BLOCKS.items()
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def from_torchvision_mobilenet_v3(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision ``mobilenet_v3_large`` state dict as :class:`MobileNetV3Large`'s:
    ``features.<i>.<rest>`` becomes ``<i>.<rest>``; the classifier is dropped."""
    prefix = "features."
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
