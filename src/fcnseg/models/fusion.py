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

from torch import Tensor, nn

from fcnseg.models.backbones import Backbone
from fcnseg.models.fcn import FCN, Alignment, _named, fcn8s, fcn8s_atonce, fcn16s, fcn32s

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


def fcn_latefusion(
    num_classes: int = 40,
    in_channels: int = 6,
    branch: str = "fcn32s",
    width: float = 1.0,
    batch_norm: bool = False,
    learnable_upsampling: bool = False,
    dropout: float = 0.5,
    geometry: str = "reference",
) -> LateFusion:
    """Late-fusion RGB-HHA FCN (nyud-fcn32s-color-hha): two VGG16 FCNs, scores summed.

    ``branch`` names the FCN of each stream (fcn32s, fcn16s, fcn8s, fcn8s_atonce);
    ``in_channels`` is the total, 3 RGB channels then ``in_channels - 3`` for the HHA branch.
    Initialise each branch on its own, e.g. ``transplant_vgg16(model.rgb, vgg)`` and
    ``transplant_vgg16(model.hha, vgg)``.
    """
    if branch not in LATE_FUSION_BRANCHES:
        raise ValueError(f"branch {branch!r} is not one of {', '.join(LATE_FUSION_BRANCHES)}")
    if in_channels <= RGB_CHANNELS:
        raise ValueError(
            f"in_channels must be > {RGB_CHANNELS} (RGB, then the HHA branch's), got {in_channels}"
        )
    builder = LATE_FUSION_BRANCHES[branch]
    common = {
        "num_classes": num_classes,
        "width": width,
        "batch_norm": batch_norm,
        "learnable_upsampling": learnable_upsampling,
        "dropout": dropout,
        "geometry": geometry,
    }
    model = LateFusion(
        builder(in_channels=RGB_CHANNELS, **common),
        builder(in_channels=in_channels - RGB_CHANNELS, **common),
    )
    return _named(model, "fcn_latefusion", in_channels=in_channels, branch=branch, **common)
