"""VGG16 (Simonyan & Zisserman) as the FCN paper uses it, convolutionalized.

Layer for layer the reference nets of fcn.berkeleyvision.org: thirteen 3x3 convolutions in
five stages, each stage ending in 2x2 max pooling that rounds up as Caffe's does; fc6 as a 7x7
convolution without padding and fc7 as a 1x1 convolution (section 3.1), 4096 wide, each with
ReLU and dropout. ``conv1_1`` is padded by 100 pixels so that fc6 sees at least 7x7 cells for
any input of at least one pixel; the FCN head crops the padding away again.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from fcnseg.models.backbones.base import Backbone, Tap, check_size
from fcnseg.models.backbones.ibn import InstanceBatchNorm
from fcnseg.models.backbones.mixstyle import MixStyle
from fcnseg.models.backbones.space_to_depth import SpaceToDepth

# (convolutions, channels) per stage, conv1 ... conv5.
VGG16_STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
FC_CHANNELS = 4096
FC6_KERNEL = 7  # the 7 x 7 x 512 input of the classifier's first fully connected layer
CONV1_PAD = 100  # lets fc6 see any input >= 1 px; the head's crop offsets undo it
DROPOUT = 0.5


def scaled(channels: int, width: float) -> int:
    """Channels of a hidden layer at a width multiplier (at least one)."""
    return max(1, round(channels * width))


class VGG16(Backbone):
    """VGG16 conv1_1 ... fc7; taps ``pool1`` ... ``pool4``, ``fc7`` (strides 2, 4, 8, 16, 32, each
    times ``space_to_depth``).

    Args:
        in_channels: input channels (3 for RGB, 4 for RGB-D, ...).
        width: multiplies every hidden layer's channels (0.25 gives a net 16x cheaper).
        batch_norm: BatchNorm after each convolution (named ``<conv>_bn``), for training from
            scratch; those convolutions then have no bias.
        conv1_padding: padding of conv1_1 (100 in the reference FCNs, 1 in the classifier).
        padding: padding of the other 3x3 convolutions (1; 0 gives "valid" convolutions).
        dropout: dropout probability after fc6 and fc7 (0.5 in the reference).
        fc_channels: width of fc6 and fc7 (default: 4096 times ``width``).
        fc6_padding: padding of fc6 (0 in the reference; 3 keeps pool5's size and grid).
        fc6_kernel: side of fc6 (7: the classifier's 7 x 7 input; smaller sees less of pool5
            per cell with fewer weights).
        instance_norm_stages: in the first this many stages, each BatchNorm normalises half of
            its channels by each image's own statistics instead (IBN-Net; needs ``batch_norm``;
            0: none).
        mixstyle_stages: in training, MixStyle (``mixstyle<n>``, before ``pool<n>``) re-styles
            the features of the first this many stages with a blend of another image's
            statistics (0: none; no weights, and the identity outside training).
        space_to_depth: ``r`` > 1 stacks the image's ``r x r`` blocks as channels before
            conv1_1 (``space_to_depth``, :class:`SpaceToDepth`): the net runs on a grid ``r``
            times coarser, every tap's stride is ``r`` times larger, no pixel is dropped.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: float = 1.0,
        batch_norm: bool = False,
        conv1_padding: int = CONV1_PAD,
        padding: int = 1,
        dropout: float = DROPOUT,
        fc_channels: int | None = None,
        fc6_padding: int = 0,
        fc6_kernel: int = FC6_KERNEL,
        instance_norm_stages: int = 0,
        mixstyle_stages: int = 0,
        space_to_depth: int = 1,
    ) -> None:
        check_size(in_channels, width)
        if not 0 <= instance_norm_stages <= len(VGG16_STAGES):
            raise ValueError(
                f"instance_norm_stages must be in 0 .. {len(VGG16_STAGES)}, "
                f"got {instance_norm_stages}"
            )
        if not 0 <= mixstyle_stages <= len(VGG16_STAGES):
            raise ValueError(
                f"mixstyle_stages must be in 0 .. {len(VGG16_STAGES)}, got {mixstyle_stages}"
            )
        if instance_norm_stages and not batch_norm:
            raise ValueError("instance_norm_stages needs batch_norm (it halves the BatchNorms)")
        layers: OrderedDict[str, nn.Module] = OrderedDict()

        def conv_relu(
            suffix: str, cin: int, cout: int, kernel: int, pad: int, conv: str, stage: int = 0
        ) -> None:
            layers[conv] = nn.Conv2d(cin, cout, kernel, padding=pad, bias=not batch_norm)
            if batch_norm and 0 < stage <= instance_norm_stages and cout > 1:
                layers[f"{conv}_bn"] = InstanceBatchNorm(cout, cout // 2)
            elif batch_norm:
                layers[f"{conv}_bn"] = nn.BatchNorm2d(cout)
            layers[f"relu{suffix}"] = nn.ReLU(inplace=True)

        channels = in_channels
        if space_to_depth != 1:
            layers["space_to_depth"] = SpaceToDepth(space_to_depth)  # (C r^2, h/r, w/r)
            channels = in_channels * space_to_depth**2
        taps = []
        for stage, (convs, stage_channels) in enumerate(VGG16_STAGES, start=1):
            out = scaled(stage_channels, width)
            for index in range(1, convs + 1):
                pad = conv1_padding if (stage, index) == (1, 1) else padding
                suffix = f"{stage}_{index}"
                conv_relu(suffix, channels, out, 3, pad, conv=f"conv{suffix}", stage=stage)
                channels = out
            if stage <= mixstyle_stages:
                layers[f"mixstyle{stage}"] = MixStyle()
            layers[f"pool{stage}"] = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # (h/2^s, w/2^s)
            taps.append(Tap(f"pool{stage}", f"pool{stage}", channels, 2**stage * space_to_depth))
        fc = fc_channels or scaled(FC_CHANNELS, width)
        # (N, fc, h/32 - fc6_kernel + 1 + 2 fc6_padding, likewise w)
        conv_relu("6", channels, fc, fc6_kernel, fc6_padding, conv="fc6")
        layers["drop6"] = nn.Dropout(dropout)
        conv_relu("7", fc, fc, 1, 0, conv="fc7")
        layers["drop7"] = nn.Dropout(dropout)
        super().__init__(layers)
        self.taps = (*taps[:4], Tap("fc7", "drop7", fc, 32 * space_to_depth))
