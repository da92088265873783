"""AlexNet as the FCN paper uses it (Table 1, FCN-AlexNet): CaffeNet, convolutionalized.

Layer for layer the reference voc-fcn-alexnet of fcn.berkeleyvision.org, itself Caffe's
"CaffeNet" variant of Krizhevsky et al.: conv1 11x11 stride 4, pooling *before* local response
normalisation, conv2/conv4/conv5 split into two groups (the two-GPU layout, kept so that Caffe
weights load one to one), 3x3 stride-2 max pooling that rounds up as Caffe's does, fc6 as a 6x6
convolution over pool5 and fc7 as a 1x1 convolution, 4096 wide with ReLU and dropout.
``conv1`` is padded by 100 pixels, as in all the reference FCNs, so that fc6 sees at least one
6x6 window for any input of at least one pixel; the FCN head crops the padding away again.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from fcnseg.models.backbones.base import Backbone, Tap, check_size
from fcnseg.models.backbones.vgg import scaled
from fcnseg.models.geometry import IDENTITY, CoordMap

CONV1_PAD = 100  # lets fc6 (6x6) see any input >= 1 px; the head's crop offsets undo it
FC6_KERNEL = 6  # the 6 x 6 x 256 input of CaffeNet's first fully connected layer
FC_CHANNELS = 4096
DROPOUT = 0.5
# Caffe's LRN across channels: b = a / (1 + alpha / n * sum of a^2 over n channels)^beta.
LRN_SIZE, LRN_ALPHA, LRN_BETA = 5, 1e-4, 0.75
GROUPS = 2  # conv2, conv4 and conv5 see only half the channels each (Krizhevsky's two GPUs)
# (name, output channels, kernel, stride, padding, groups) of the five convolutions.
ALEXNET_CONVS = (
    ("conv1", 96, 11, 4, CONV1_PAD, 1),
    ("conv2", 256, 5, 1, 2, GROUPS),
    ("conv3", 384, 3, 1, 1, 1),
    ("conv4", 384, 3, 1, 1, GROUPS),
    ("conv5", 256, 3, 1, 1, GROUPS),
)


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` (Caffe's ACROSS_CHANNELS LRN) that declares its geometry.

    It mixes channels at each pixel and never moves one, so its coordinate map is the identity.
    """

    def __init__(self) -> None:
        super().__init__(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=1.0)

    def coord_map(self) -> CoordMap:
        return IDENTITY


def grouped(channels: int, width: float) -> int:
    """Channels of a grouped layer at a width multiplier: a positive multiple of ``GROUPS``."""
    return GROUPS * max(1, round(channels * width / GROUPS))


class AlexNet(Backbone):
    """CaffeNet conv1 ... fc7; taps ``norm1`` (stride 8), ``norm2`` (16) and ``fc7`` (32).

    Layer names are the reference's (``conv1``, ``norm1``, ..., ``fc7``), and weight shapes
    Caffe's, grouped convolutions included (``conv2.weight``: 256 x 48 x 5 x 5).

    Args:
        in_channels: input channels (3 for RGB).
        width: multiplies every hidden layer's channels (rounded to a multiple of 2).
        conv1_padding: padding of conv1 (100 in the reference FCN, 0 in the classifier).
        dropout: dropout probability after fc6 and fc7.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: float = 1.0,
        conv1_padding: int = CONV1_PAD,
        dropout: float = DROPOUT,
    ) -> None:
        check_size(in_channels, width)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for index, (name, out, kernel, stride, pad, groups) in enumerate(ALEXNET_CONVS, 1):
            out = grouped(out, width)
            pad = conv1_padding if name == "conv1" else pad
            layers[name] = nn.Conv2d(channels, out, kernel, stride, pad, groups=groups)
            layers[f"relu{index}"] = nn.ReLU(inplace=True)
            channels = out
            if index in (1, 2, 5):
                # 3x3 stride-2 max pooling, rounding up like Caffe: (N, C, h/2, w/2)
                layers[f"pool{index}"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            if index in (1, 2):
                layers[f"norm{index}"] = LocalResponseNorm()
        fc = scaled(FC_CHANNELS, width)
        layers["fc6"] = nn.Conv2d(channels, fc, FC6_KERNEL)  # (N, fc, h/32 - 5, w/32 - 5)
        layers["relu6"] = nn.ReLU(inplace=True)
        layers["drop6"] = nn.Dropout(dropout)
        layers["fc7"] = nn.Conv2d(fc, fc, 1)
        layers["relu7"] = nn.ReLU(inplace=True)
        layers["drop7"] = nn.Dropout(dropout)
        super().__init__(layers)
        self.taps = (
            Tap("norm1", "norm1", layers["conv1"].out_channels, 8),
            Tap("norm2", "norm2", layers["conv2"].out_channels, 16),
            Tap("fc7", "drop7", fc, 32),
        )
