"""Late fusion of RGB and HHA nets (section 5, NYUDv2; PAMI 2016, 6.4).

Gupta et al.'s HHA encodes depth as horizontal disparity, height above ground and the angle
of the local surface normal with gravity, three channels a VGG16 can be fine-tuned on. The
paper's best NYUDv2 net trains one FCN on RGB and one on HHA and sums their final scores
("late fusion"), learning both end to end; it beats stacking depth onto RGB at the input
("early fusion", ``in_channels=4`` with :func:`~fcnseg.models.surgery.transplant_vgg16`'s
``extra_channels="mean"``).

The fused net takes one tensor, RGB then HHA (N x 6 x H x W, NYUDv2's ``modality="rgbhha"``),
so it trains, saves and loads like any other net.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn

from fcnseg.models.backbones import Backbone
from fcnseg.models.config import builder
from fcnseg.models.fcn import (
    FCN,
    Alignment,
    VGG16FCNConfig,
    fcn8s,
    fcn8s_atonce,
    fcn16s,
    fcn32s,
)

# The FCN builders a branch may use (the VGG16 family of the paper).
LATE_FUSION_BRANCHES = {
    "fcn32s": fcn32s,
    "fcn16s": fcn16s,
    "fcn8s": fcn8s,
    "fcn8s_atonce": fcn8s_atonce,
}
RGB_CHANNELS = 3  # the first input channels go to the RGB branch, the rest to the HHA branch


class LateFusion(nn.Module):
    """Two FCNs whose scores are summed: ``forward(N x (3 + C) x H x W) -> N x K x H x W``.

    ``rgb`` sees channels 0..2, ``hha`` the remaining C (3 for HHA); both must score the same
    K classes. Parameters are named ``rgb.*`` and ``hha.*``. ``backbone``, ``head`` and
    ``alignments`` are those of the RGB branch (both branches share one architecture), so
    geometry tools such as :mod:`fcnseg.models.zoo` read the pair as one net.
    """

    def __init__(self, rgb_net: FCN, hha_net: FCN) -> None:
        super().__init__()
        if rgb_net.num_classes != hha_net.num_classes:
            raise ValueError(
                f"the RGB net scores {rgb_net.num_classes} classes, the HHA net"
                f" {hha_net.num_classes}; late fusion sums scores of the same classes"
            )
        self.rgb = rgb_net
        self.hha = hha_net
        self.num_classes = rgb_net.num_classes

    @property
    def backbone(self) -> Backbone:
        return self.rgb.backbone

    @property
    def head(self) -> str:
        return self.rgb.head

    @property
    def alignments(self) -> tuple[Alignment, ...]:
        return self.rgb.alignments

    def forward(self, x: Tensor) -> Tensor:
        rgb, hha = x[:, :RGB_CHANNELS], x[:, RGB_CHANNELS:]  # (N, 3, H, W), (N, C, H, W)
        return self.rgb(rgb) + self.hha(hha)  # (N, K, H, W): the scores summed


@dataclass(frozen=True)
class LateFusionConfig(VGG16FCNConfig):
    """Settings of the late-fusion net: each branch's VGG16 FCN settings, and which FCN."""

    num_classes: int = 40  # NYUDv2's 40 classes
    in_channels: int = 6  # in total: 3 RGB, then in_channels - 3 for the HHA branch
    branch: str = "fcn32s"  # the FCN of each stream: a key of LATE_FUSION_BRANCHES

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.branch not in LATE_FUSION_BRANCHES:
            raise ValueError(
                f"branch {self.branch!r} is not one of {', '.join(LATE_FUSION_BRANCHES)}"
            )
        if self.in_channels <= RGB_CHANNELS:
            raise ValueError(
                f"in_channels must be > {RGB_CHANNELS} (RGB, then the HHA branch's),"
                f" got {self.in_channels}"
            )

    def branch_config(self, in_channels: int) -> VGG16FCNConfig:
        """One branch's config: these settings, with its own input channels."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(VGG16FCNConfig)}
        return VGG16FCNConfig(**{**shared, "in_channels": in_channels})


@builder(LateFusionConfig)
def fcn_latefusion(config: LateFusionConfig) -> LateFusion:
    """Late-fusion RGB-HHA FCN (nyud-fcn32s-color-hha): two VGG16 FCNs, scores summed.

    ``branch`` names the FCN of each stream (fcn32s, fcn16s, fcn8s, fcn8s_atonce);
    ``in_channels`` is the total, 3 RGB channels then ``in_channels - 3`` for the HHA branch.
    Initialise each branch on its own, e.g. ``transplant_vgg16(model.rgb, vgg)`` and
    ``transplant_vgg16(model.hha, vgg)``.
    """
    branch = LATE_FUSION_BRANCHES[config.branch]
    return LateFusion(
        branch.from_config(config.branch_config(RGB_CHANNELS)),
        branch.from_config(config.branch_config(config.in_channels - RGB_CHANNELS)),
    )
