"""ResNet (He et al. 2016) as an FCN backbone: taps ``layer2``, ``layer3``, ``layer4``.

Not in the FCN paper, which predates it; the same FCN-8s head goes on it unchanged. Laid out
exactly as torchvision's ``resnet18`` ... ``resnet101`` (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...; the stride on the 3x3 convolution of a bottleneck, "v1.5"), so
a torchvision state dict loads after :func:`from_torchvision_resnet` drops its classifier.
BatchNorm after every convolution, for training from scratch.

Geometry. Every strided layer is padded "same" (7x7/2 pad 3, max pool 3x3/2 pad 1, 3x3/2
pad 1, 1x1/2 pad 0), so each tap's coordinate map is ``x / stride`` with no shift: cell ``u``
of a tap sits on image pixel ``stride * u``. A residual block's two paths share that map (it is
checked); its receptive field is the larger path's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from torch import Tensor, nn

from fcnseg.models.backbones.base import Backbone, Tap, check_size
from fcnseg.models.backbones.vgg import scaled
from fcnseg.models.geometry import CoordMap, compose, receptive_field

STEM_CHANNELS = 64
STAGE_CHANNELS = (64, 128, 256, 512)  # planes of layer1 ... layer4
STAGE_STRIDES = (1, 2, 2, 2)  # after the stem's stride 4: layer1 at 4, layer2 at 8, ...
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)


class _Residual(nn.Module):
    """``relu(path(x) + shortcut(x))``; subclasses name ``path`` after torchvision's blocks."""

    path: tuple[str, ...] = ()

    def _add_shortcut(self, cin: int, cout: int, stride: int) -> None:
        """A 1x1 projection where the shape changes (registered last, as torchvision does)."""
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*_conv_bn(cin, cout, 1, stride))

    def path_layers(self) -> list[nn.Module]:
        return [self._modules[name] for name in self.path]

    def shortcut_layers(self) -> list[nn.Module]:
        return [] if self.downsample is None else [self.downsample]

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        for name in self.path:
            x = self._modules[name](x)
        return self.relu(x + identity)

    def coord_map(self) -> CoordMap:
        path, shortcut = compose(self.path_layers()), compose(self.shortcut_layers())
        if path != shortcut:
            raise ValueError(f"residual paths are not aligned: {path} vs shortcut {shortcut}")
        return path

    def receptive_field(self) -> tuple[int, int]:
        """(size, stride) of an output pixel: the larger of the two paths'."""
        return max(receptive_field(self.path_layers()), receptive_field(self.shortcut_layers()))


class BasicBlock(_Residual):
    """Two 3x3 convolutions, the first strided: ``(N, cin, h, w) -> (N, planes, h/s, w/s)``."""

    expansion = 1
    path = ("conv1", "bn1", "relu", "conv2", "bn2")

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, planes, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self._add_shortcut(cin, planes, stride)


class Bottleneck(_Residual):
    """1x1 reduce, 3x3 (with the stride), 1x1 expand to ``4 * planes`` channels."""

    expansion = 4
    path = ("conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3")

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = _conv_bn(planes, planes * self.expansion, 1)
        self.relu = nn.ReLU(inplace=True)
        self._add_shortcut(cin, planes * self.expansion, stride)


class ResNet(Backbone):
    """ResNet-18/34/50/101 without its classifier; taps ``layer2`` (stride 8), ``layer3`` (16)
    and ``layer4`` (32).

    Args:
        depth: 18 or 34 (basic blocks), 50 or 101 (bottlenecks).
        in_channels: input channels (3 for RGB).
        width: multiplies every hidden layer's channels.
    """

    def __init__(self, depth: int = 50, in_channels: int = 3, width: float = 1.0) -> None:
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(DEPTHS)}")
        check_size(in_channels, width)
        block = BasicBlock if depth < 50 else Bottleneck
        channels = scaled(STEM_CHANNELS, width)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"], layers["bn1"] = _conv_bn(in_channels, channels, 7, 2)  # (N, 64, h/2, w/2)
        layers["relu"] = nn.ReLU(inplace=True)
        layers["maxpool"] = nn.MaxPool2d(3, stride=2, padding=1)  # (N, 64, h/4, w/4)
        taps = []
        stride = 4
        for index, (planes, blocks, first_stride) in enumerate(
            zip(STAGE_CHANNELS, DEPTHS[depth], STAGE_STRIDES), start=1
        ):
            planes = scaled(planes, width)
            stage = []
            for b in range(blocks):
                stage.append(block(channels, planes, first_stride if b == 0 else 1))
                channels = planes * block.expansion
            layers[f"layer{index}"] = nn.Sequential(*stage)  # (N, C, h/stride, w/stride)
            stride *= first_stride
            taps.append(Tap(f"layer{index}", f"layer{index}", channels, stride))
        super().__init__(layers)
        self.taps = tuple(taps[1:])
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def from_torchvision_resnet(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision ``resnet*`` state dict as :class:`ResNet`'s: the same names, ``fc`` dropped."""
    return {key: value for key, value in state.items() if not key.startswith("fc.")}
