"""GoogLeNet (Szegedy et al., Inception v1) as the FCN paper uses it (Table 1, FCN-GoogLeNet).

The BVLC GoogLeNet of Caffe's model zoo up to ``inception_5b``; section 4.1 of the paper keeps
only the final loss layer and *discards the final average pooling layer* (``pool5/7x7_s1``),
so the scores are predicted from ``inception_5b`` at stride 32, after the classifier's dropout
(0.4). The auxiliary classifiers are dropped too. As in the other reference FCNs, the first
convolution is padded by 100 pixels so that every pooling layer sees at least one window for
any input of at least one pixel; the FCN head crops the padding away again.

Names. Caffe names layers ``conv1/7x7_s2`` and ``inception_3a/3x3_reduce``; ``/`` cannot
appear in a PyTorch name. The stem layers sit flat in the backbone, so ``/`` becomes ``_``
(``conv1_7x7_s2``, ``pool1_norm1``); an inception module is a submodule, so ``/`` becomes ``.``
(``inception_3a.3x3_reduce``). :func:`caffe_layer_name` inverts the rule.

Geometry. Every branch of an inception module keeps the size and the pixel grid ("same"
padding, stride 1), so a module has one coordinate map; its receptive field is the largest of
its branches' (the 5x5 branch), which is what a pixel of the concatenated output can see.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from fcnseg.models.backbones.alexnet import LocalResponseNorm
from fcnseg.models.backbones.base import Backbone, Tap, check_size
from fcnseg.models.backbones.vgg import scaled
from fcnseg.models.geometry import CoordMap, compose, receptive_field

CONV1_PAD = 100  # lets pool4 see any input >= 1 px; the head's crop offsets undo it
DROPOUT = 0.4  # BVLC GoogLeNet's pool5/drop_7x7_s1
# Output channels per inception module: 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj.
INCEPTIONS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
POOL_AFTER = {"3b": "pool3_3x3_s2", "4e": "pool4_3x3_s2"}  # stride 8 -> 16 -> 32


def caffe_layer_name(name: str) -> str:
    """The Caffe layer name of a GoogLeNet module name (``conv1_7x7_s2`` -> ``conv1/7x7_s2``)."""
    if "." in name:
        return name.replace(".", "/")
    return name.replace("_", "/", 1)


class Inception(nn.Module):
    """An inception module: four branches concatenated, ``(N, C, h, w) -> (N, out, h, w)``.

    Branches (Caffe names after ``inception_<id>/``): ``1x1``; ``3x3_reduce`` -> ``3x3``;
    ``5x5_reduce`` -> ``5x5``; ``pool`` (3x3 max, stride 1) -> ``pool_proj``; ReLU after each
    convolution. ``out = 1x1 + 3x3 + 5x5 + pool_proj`` channels.
    """

    BRANCHES = (
        ("1x1", "relu_1x1"),
        ("3x3_reduce", "relu_3x3_reduce", "3x3", "relu_3x3"),
        ("5x5_reduce", "relu_5x5_reduce", "5x5", "relu_5x5"),
        ("pool", "pool_proj", "relu_pool_proj"),
    )

    def __init__(self, in_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, proj = channels
        layers = {
            "1x1": nn.Conv2d(in_channels, c1, 1),
            "3x3_reduce": nn.Conv2d(in_channels, c3r, 1),
            "3x3": nn.Conv2d(c3r, c3, 3, padding=1),
            "5x5_reduce": nn.Conv2d(in_channels, c5r, 1),
            "5x5": nn.Conv2d(c5r, c5, 5, padding=2),
            "pool": nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            "pool_proj": nn.Conv2d(in_channels, proj, 1),
        }
        for branch in self.BRANCHES:
            for name in branch:
                self.add_module(name, layers[name] if name in layers else nn.ReLU(inplace=True))
        self.out_channels = c1 + c3 + c5 + proj

    def branches(self) -> list[list[nn.Module]]:
        return [[self._modules[name] for name in branch] for branch in self.BRANCHES]

    def forward(self, x: Tensor) -> Tensor:
        outputs = []
        for branch in self.branches():
            y = x
            for layer in branch:
                y = layer(y)
            outputs.append(y)
        return torch.cat(outputs, 1)  # (N, out_channels, h, w)

    def coord_map(self) -> CoordMap:
        maps = {compose(branch) for branch in self.branches()}
        if len(maps) != 1:
            raise ValueError(f"the branches of {self} are not aligned: {sorted(maps, key=str)}")
        return maps.pop()

    def receptive_field(self) -> tuple[int, int]:
        """(size, stride) of an output pixel: the largest over the branches."""
        return max(receptive_field(branch) for branch in self.branches())


class GoogLeNet(Backbone):
    """GoogLeNet conv1 ... inception_5b; taps ``inception_3b`` (stride 8), ``inception_4e``
    (16) and ``inception_5b`` (32, after the classifier's dropout).

    Args:
        in_channels: input channels (3 for RGB).
        width: multiplies every hidden layer's channels.
        conv1_padding: padding of ``conv1/7x7_s2`` (100 here, 3 in the classifier).
        dropout: dropout probability before the score layer (0.4 in BVLC GoogLeNet).
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: float = 1.0,
        conv1_padding: int = CONV1_PAD,
        dropout: float = DROPOUT,
    ) -> None:
        check_size(in_channels, width)
        c64, c192 = scaled(64, width), scaled(192, width)

        def pool() -> nn.MaxPool2d:  # 3x3 stride 2, rounding up like Caffe: (N, C, h/2, w/2)
            return nn.MaxPool2d(3, stride=2, ceil_mode=True)

        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1_7x7_s2=nn.Conv2d(in_channels, c64, 7, 2, conv1_padding),  # (N, 64, h/2, w/2)
            conv1_relu_7x7=nn.ReLU(inplace=True),
            pool1_3x3_s2=pool(),  # (N, 64, h/4, w/4)
            pool1_norm1=LocalResponseNorm(),
            conv2_3x3_reduce=nn.Conv2d(c64, c64, 1),
            conv2_relu_3x3_reduce=nn.ReLU(inplace=True),
            conv2_3x3=nn.Conv2d(c64, c192, 3, padding=1),
            conv2_relu_3x3=nn.ReLU(inplace=True),
            conv2_norm2=LocalResponseNorm(),
            pool2_3x3_s2=pool(),  # (N, 192, h/8, w/8)
        )
        channels = c192
        for name, config in INCEPTIONS.items():
            module = Inception(channels, tuple(scaled(c, width) for c in config))
            layers[f"inception_{name}"] = module
            channels = module.out_channels
            if name in POOL_AFTER:
                layers[POOL_AFTER[name]] = pool()  # (N, C, h/16, w/16), then h/32, w/32
        layers["pool5_drop_7x7_s1"] = nn.Dropout(dropout)  # pool5/7x7_s1 itself is discarded
        super().__init__(layers)
        self.taps = (
            Tap("inception_3b", "inception_3b", layers["inception_3b"].out_channels, 8),
            Tap("inception_4e", "inception_4e", layers["inception_4e"].out_channels, 16),
            Tap("inception_5b", "pool5_drop_7x7_s1", channels, 32),
        )
