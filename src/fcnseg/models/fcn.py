"""Fully Convolutional Networks: a backbone, a 1x1 score layer, skips and in-net upsampling.

Section 4.2 of Long, Shelhamer & Darrell: FCN-32s upsamples the stride-32 scores of ``fc7``
straight to the image. FCN-16s first upsamples them 2x, adds scores predicted from ``pool4``
and upsamples the sum 16x; FCN-8s adds ``pool3`` the same way and upsamples 8x. Each skip is
cropped onto the coarser scores, and the final scores onto the image, at offsets derived from
the layer geometry (:mod:`fcnseg.models.geometry`); :func:`align_upsampling` also picks each
upsampling kernel from it, so the same head aligns on any backbone (VGG16's 100-pixel padding,
AlexNet's, or a ResNet's "same" padding). The "at-once" FCN-8s (PAMI version, 5.1) trains all
skips together, scaling ``pool4`` by 0.01 and ``pool3`` by 0.0001 before scoring.

Table 1 nets: FCN-AlexNet and FCN-GoogLeNet (FCN-32s) beside the VGG16 family; FCN-8s heads on
ResNet-18/34/50/101 and MobileNetV3-Large are modern additions. ``geometry="fast"`` builds the
VGG16 nets without the reference's 100-pixel padding (same parameters, far fewer pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor, nn

from fcnseg.models.backbones import VGG16, AlexNet, Backbone, GoogLeNet, MobileNetV3Large, ResNet
from fcnseg.models.backbones.vgg import CONV1_PAD, FC6_KERNEL
from fcnseg.models.config import FCNConfig, builder
from fcnseg.models.geometry import IDENTITY, CoordMap
from fcnseg.models.upsample import BilinearUpsample, bilinear_weight

# Fixed skip scales of the at-once FCN-8s (PAMI 2016): the skip features are orders of
# magnitude larger than fc7's, and the scales keep early training from being swamped by them.
AT_ONCE_SKIP_SCALES = {"pool4": 0.01, "pool3": 0.0001}
# VGG16 geometries. "reference": conv1_1 padded by 100 (the released nets). "fast": conv1_1
# padded by 1 like the classifier, fc6 padded by fc6_kernel // 2 (3: "same") so pool5's map
# carries through.
GEOMETRIES = ("reference", "fast")
FAST_CONV1_PAD = 1


@dataclass(frozen=True)
class Alignment:
    """One upsampling step: its bilinear kernel and the crops that put its output in place.

    ``kernel``: side of the transposed convolution (stride ``factor``, no padding).
    ``score_crop``: cells dropped from the start of the upsampled scores.
    ``target_crop``: cells dropped from the start of what they are added to (a skip's scores;
    always 0 for the image).
    """

    factor: int
    kernel: int
    score_crop: int
    target_crop: int


def align_upsampling(scores: CoordMap, target: CoordMap, factor: int, what: str) -> Alignment:
    """Choose the kernel of an upsampling by ``factor`` and the crops aligning it with ``target``.

    A transposed convolution with stride f, kernel k and padding p maps score cell c to
    ``f c + (k - 1)/2 - p`` (:func:`~fcnseg.models.geometry.layer_coord_map`). With the scores
    at ``x/S + a`` and the target grid at ``f x/S + b`` (x in image pixels), the upsampled cell
    on the target's cell 0 is number ``e = f a - b + (k - 1)/2 - p``.

    1. e must be an integer. f a - b is fixed by the backbone and p is an integer, so only the
       kernel's parity matters: k = 2f when f a - b is a half-integer (VGG16: 64, 4), k = 2f - 1
       when it is an integer (AlexNet's 63; ResNet's 3 and 15). Both are the bilinear kernel for
       factor f (:func:`~fcnseg.models.upsample.bilinear_kernel`). Any other fraction cannot be
       cropped into place: ValueError.
    2. p = 0. Padding trims p cells from *both* ends; only the start needs trimming, while at
       the far end the finer grid may reach past the last coarse cell (a ResNet's last stride-32
       cell sits on pixel 32 (n - 1) <= H - 1), where only the kernel's tail reaches.
    3. e >= 0: drop e cells from the upsampled scores; e < 0: drop -e from the target (a skip's
       scores, as the reference crops pool4's by 5). The image cannot be cropped, so for the
       final step e < 0 is an error.
    """
    if scores.scale * factor != target.scale:
        raise ValueError(
            f"{what}: upsampling scores at {scores} by {factor} does not reach the stride of"
            f" {target}"
        )
    phase = factor * scores.shift - target.shift
    if phase.denominator == 1:
        kernel = 2 * factor - 1
    elif phase.denominator == 2:
        kernel = 2 * factor
    else:
        raise ValueError(
            f"{what}: scores at {scores}, upsampled {factor}x, fall {phase} cells from {target};"
            " no bilinear kernel (2f or 2f - 1) puts them on whole cells"
        )
    offset = phase + Fraction(kernel - 1, 2)
    if target == IDENTITY and offset < 0:
        raise ValueError(
            f"{what}: the upsampled scores start {-offset} pixels inside the image; pad the"
            " backbone's first layer so its last tap covers the image borders"
        )
    return Alignment(factor, kernel, max(int(offset), 0), max(-int(offset), 0))


def _upsampling(channels: int, alignment: Alignment, learnable: bool) -> nn.ConvTranspose2d:
    """A transposed convolution initialised to bilinear upsampling; frozen unless ``learnable``."""
    layer = BilinearUpsample(  # a plain ConvTranspose2d, marked as bilinear
        channels, channels, alignment.kernel, stride=alignment.factor, bias=False
    )
    with torch.no_grad():
        layer.weight.copy_(bilinear_weight(channels, alignment.kernel))
    layer.weight.requires_grad_(learnable)
    return layer


def _crop(x: Tensor, offset: int, height: int, width: int) -> Tensor:
    return x[:, :, offset : offset + height, offset : offset + width]


def _overlap(score: Tensor, score_crop: int, skip: Tensor, skip_crop: int) -> tuple[Tensor, Tensor]:
    """Upsampled scores and a skip's scores, cropped at their offsets to the part both cover.

    For the nets here, which one ends first depends on the backbone, not the input size:
    VGG16's reference scores (fc6 is unpadded) end inside pool4; "same"-padded nets' overhang
    their skips or tie. The skip comes first in ``min`` so that ties resolve to it, and a
    ``torch.jit.trace`` (which fixes the branch taken) stays right for every input size.
    """
    height = min(skip.shape[-2] - skip_crop, score.shape[-2] - score_crop)
    width = min(skip.shape[-1] - skip_crop, score.shape[-1] - score_crop)
    return _crop(score, score_crop, height, width), _crop(skip, skip_crop, height, width)


class FCN(nn.Module):
    """An FCN on any :class:`Backbone`: ``forward(N x C x H x W) -> N x num_classes x H x W``.

    Args:
        backbone: returns the taps named by ``head`` and ``skips``.
        num_classes: output channels of every score layer.
        head: the coarsest tap, scored by ``score_fr``.
        skips: finer taps fused in order, coarse to fine (``("pool4", "pool3")`` for FCN-8s).
            Each must have half the stride of the one before.
        skip_scales: a fixed factor per skip tap applied before its score layer (at-once).
        learnable_upsampling: learn the bilinear-initialised deconvolutions (frozen otherwise).
        global_context: add to every cell of ``score_fr`` the scores ``score_global`` gives the
            head's mean over the whole image (ParseNet, Liu, Rabinovich & Berg 2015: global
            context unpooled onto the map; fused after scoring, zero-initialised).

    Layer names follow the reference: ``score_fr``, ``score_<tap>``, ``upscore2`` for the first
    2x upsampling, ``upscore_<tap>`` for later ones, and ``upscore<stride>`` for the final one
    (plain ``upscore`` when there are no skips, as in voc-fcn32s). Kernels and crops come from
    :func:`align_upsampling`: ``alignments`` holds one per upsampling, ``skip_offsets`` the
    crops of the skips, ``score_offsets`` those of the upsampled scores before each fusion, and
    ``final_offset`` that of the final scores.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        head: str = "fc7",
        skips: Sequence[str] = (),
        skip_scales: dict[str, float] | None = None,
        learnable_upsampling: bool = False,
        global_context: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.head = head
        self.skips = tuple(skips)
        skip_scales = dict(skip_scales or {})
        unknown = set(skip_scales) - set(self.skips)
        if unknown:
            raise ValueError(f"skip_scales names {sorted(unknown)}, which are not skips {skips}")

        head_tap = backbone.tap(head)
        self.score_fr = self._score_layer(head_tap.channels)
        self.global_context = global_context
        if global_context:
            self.score_global = self._score_layer(head_tap.channels)
        for name, scale in skip_scales.items():
            self.register_buffer(f"scale_{name}", torch.tensor(float(scale)))

        self.alignments = plan_upsampling(backbone, head, self.skips)
        self.upsampling_names = upsampling_names(self.skips, self.alignments[-1].factor)
        for tap_name, name, align in zip(self.skips, self.upsampling_names, self.alignments):
            self.add_module(name, _upsampling(num_classes, align, learnable_upsampling))
            self.add_module(f"score_{tap_name}", self._score_layer(backbone.tap(tap_name).channels))
        self.final_upscore_name = self.upsampling_names[-1]
        final = _upsampling(num_classes, self.alignments[-1], learnable_upsampling)
        self.add_module(self.final_upscore_name, final)
        self.skip_offsets: list[int] = [a.target_crop for a in self.alignments[:-1]]
        self.score_offsets: list[int] = [a.score_crop for a in self.alignments[:-1]]
        self.final_offset = self.alignments[-1].score_crop

    def _score_layer(self, channels: int) -> nn.Conv2d:
        return score_layer(channels, self.num_classes)

    def upsampling_layers(self) -> list[nn.ConvTranspose2d]:
        """The transposed convolutions, coarse to fine."""
        return [getattr(self, name) for name in self.upsampling_names]

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        features = self.backbone(x)
        head = features[self.head]
        score = self.score_fr(head)  # (N, K, H/32 + ..., W/32 + ...)
        if self.global_context:  # (N, K, 1, 1), broadcast over every cell
            score = score + self.score_global(head.mean((-2, -1), keepdim=True))
        upsampling = self.upsampling_layers()
        for tap, upscore, score_crop, skip_crop in zip(
            self.skips, upsampling, self.score_offsets, self.skip_offsets
        ):
            score = upscore(score)  # (N, K, 2h + k - 2, 2w + k - 2), k = 4 or 3
            skip = features[tap]
            scale = getattr(self, f"scale_{tap}", None)
            if scale is not None:
                skip = skip * scale
            skip = getattr(self, f"score_{tap}")(skip)  # (N, K, finer h, finer w)
            score, skip = _overlap(score, score_crop, skip, skip_crop)  # both on the skip's grid
            score = score + skip
        score = upsampling[-1](score)  # (N, K, >= H + offset, >= W + offset)
        if (
            score.shape[-2] - self.final_offset < height
            or score.shape[-1] - self.final_offset < width
        ):
            raise RuntimeError(
                f"scores of size {tuple(score.shape[-2:])} cropped at {self.final_offset} do not"
                f" cover the {height} x {width} input"
            )
        return _crop(score, self.final_offset, height, width)  # (N, K, H, W)


def plan_upsampling(backbone: Backbone, head: str, skips: Sequence[str]) -> tuple[Alignment, ...]:
    """The alignments of the upsamplings after ``head``, one per skip (coarse to fine), then
    the final one; each skip must halve the stride.

    Walks coarse to fine, tracking where the running scores sit in the image: the fused
    scores sit on the skip's grid, shifted by its crop.
    """
    scores_map = backbone.coord_map(head)
    stride = backbone.tap(head).stride
    alignments = []
    for tap_name in skips:
        tap = backbone.tap(tap_name)
        if tap.stride * 2 != stride:
            raise ValueError(f"skip {tap_name} has stride {tap.stride}, expected {stride // 2}")
        skip_map = backbone.coord_map(tap_name)
        align = align_upsampling(scores_map, skip_map, 2, what=f"skip {tap_name}")
        alignments.append(align)
        scores_map = CoordMap(skip_map.scale, skip_map.shift - align.target_crop)  # fused
        stride = tap.stride
    alignments.append(align_upsampling(scores_map, IDENTITY, stride, what="final upsampling"))
    return tuple(alignments)


def upsampling_names(skips: Sequence[str], final_factor: int) -> tuple[str, ...]:
    """The reference's names of the upsamplings, coarse to fine: ``upscore2``, then
    ``upscore_<previous skip>`` for each later skip, then ``upscore<factor>`` (plain
    ``upscore`` without skips, as in voc-fcn32s). A final factor of 2 (FCN-2s) would repeat
    the first name, so that one follows the skips' pattern: ``upscore_<last skip>``."""
    if not skips:
        return ("upscore",)
    final = f"upscore{final_factor}" if final_factor != 2 else f"upscore_{skips[-1]}"
    return ("upscore2", *(f"upscore_{tap}" for tap in skips[:-1]), final)


def score_layer(channels: int, num_classes: int) -> nn.Conv2d:
    """A 1x1 class-scoring convolution, zero-initialised as in the paper (section 4.3)."""
    score = nn.Conv2d(channels, num_classes, 1)
    nn.init.zeros_(score.weight)
    nn.init.zeros_(score.bias)
    return score


@dataclass(frozen=True)
class VGG16FCNConfig(FCNConfig):
    """Settings of the VGG16 FCNs (fcn32s, fcn16s, fcn8s, fcn4s, fcn2s, fcn8s_atonce)."""

    batch_norm: bool = False  # BatchNorm after every convolution (not in the paper)
    dropout: float = 0.5  # after fc6 and fc7, as in the VGG16 classifier
    geometry: str = "reference"  # "reference" (conv1_1 padded by 100) or "fast" (GEOMETRIES)
    # IBN-Net: in conv1 ... conv<n>, half of each BatchNorm's channels by each image's own
    # statistics (instance normalisation); needs batch_norm (0: none; not in the paper)
    instance_norm_stages: int = 0
    # MixStyle: in training, the features of conv1 ... conv<n> re-styled with a random blend of
    # their image's and another's per-channel mean and deviation (0: none; not in the paper)
    mixstyle_stages: int = 0
    # ParseNet: scores of fc7's mean over the whole image added to every cell's (not in the
    # paper; the net then no longer equals its classifier on each window, and tiled inference
    # gives each tile its own mean)
    global_context: bool = False
    # Space-to-depth: the image's r x r blocks stacked as channels before conv1_1, so the net
    # runs at 1/r of the image's resolution without dropping a pixel; the final upsampling
    # spans r times more (1: none; not in the paper)
    space_to_depth: int = 1
    # side of fc6: 7 is the classifier's 7 x 7 x 512 input (section 3.1); an odd smaller one
    # sees less of pool5 per cell with (7/k)^2 fewer weights (not in the paper)
    fc6_kernel: int = FC6_KERNEL

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"geometry {self.geometry!r} is not one of {GEOMETRIES}")
        factor, kernel = self.space_to_depth, self.fc6_kernel
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise ValueError(f"space_to_depth must be an integer >= 1, got {factor!r}")
        if not isinstance(kernel, int) or isinstance(kernel, bool) or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"fc6_kernel must be an odd integer >= 1, got {kernel!r}")


@dataclass(frozen=True)
class AlexNetFCNConfig(FCNConfig):
    """Settings of FCN-AlexNet."""

    dropout: float = 0.5  # after fc6 and fc7, as in CaffeNet


@dataclass(frozen=True)
class GoogLeNetFCNConfig(FCNConfig):
    """Settings of FCN-GoogLeNet."""

    dropout: float = 0.4  # before the score layer, as GoogLeNet's before its classifier


def vgg16_backbone(config: VGG16FCNConfig) -> VGG16:
    """The VGG16 of the FCN builders in the ``"reference"`` or ``"fast"`` geometry."""
    fast = config.geometry == "fast"
    return VGG16(
        config.in_channels,
        width=config.width,
        batch_norm=config.batch_norm,
        dropout=config.dropout,
        conv1_padding=FAST_CONV1_PAD if fast else CONV1_PAD,
        # fast: (N, fc, h/32, w/32), fc6 keeps pool5's size and grid; weights are unchanged
        fc6_padding=config.fc6_kernel // 2 if fast else 0,
        fc6_kernel=config.fc6_kernel,
        instance_norm_stages=config.instance_norm_stages,
        mixstyle_stages=config.mixstyle_stages,
        space_to_depth=config.space_to_depth,
    )


def _vgg16_fcn(
    config: VGG16FCNConfig, skips: Sequence[str], skip_scales: dict[str, float] | None = None
) -> FCN:
    backbone = vgg16_backbone(config)
    return FCN(
        backbone,
        config.num_classes,
        "fc7",
        skips,
        skip_scales,
        config.learnable_upsampling,
        config.global_context,
    )


@builder(VGG16FCNConfig)
def fcn32s(config: VGG16FCNConfig) -> FCN:
    """FCN-32s on VGG16 (voc-fcn32s): fc7 scores upsampled 32x in one step.

    ``geometry="fast"`` drops the 100-pixel padding (see ``GEOMETRIES``); same parameters.
    """
    return _vgg16_fcn(config, ())


@builder(VGG16FCNConfig)
def fcn16s(config: VGG16FCNConfig) -> FCN:
    """FCN-16s on VGG16 (voc-fcn16s): fc7 scores fused with pool4's, upsampled 16x."""
    return _vgg16_fcn(config, ("pool4",))


@builder(VGG16FCNConfig)
def fcn8s(config: VGG16FCNConfig) -> FCN:
    """FCN-8s on VGG16 (voc-fcn8s): fused with pool4's and then pool3's scores, upsampled 8x."""
    return _vgg16_fcn(config, ("pool4", "pool3"))


@builder(VGG16FCNConfig)
def fcn4s(config: VGG16FCNConfig) -> FCN:
    """FCN-4s on VGG16: FCN-8s fused once more, with pool2's scores, and upsampled 4x.

    Section 4.2 carries the skips on to pool2 and finds diminishing returns on PASCAL; thin
    objects a few pixels wide (poles, signs in road scenes at reduced resolution) are where a
    stride-4 skip can still add detail.
    """
    return _vgg16_fcn(config, ("pool4", "pool3", "pool2"))


@builder(VGG16FCNConfig)
def fcn2s(config: VGG16FCNConfig) -> FCN:
    """FCN-2s on VGG16: FCN-4s fused once more, with pool1's scores, and upsampled 2x.

    pool1 is the last pooling to skip from: a cell of 2 x 2 pixels, for structures one or two
    pixels wide at reduced resolution (poles and signs in halved road scenes). Its score layer
    is a 1x1 convolution of pool1's 64 x ``width`` channels at half the image's size.
    """
    return _vgg16_fcn(config, ("pool4", "pool3", "pool2", "pool1"))


@builder(VGG16FCNConfig)
def fcn8s_atonce(config: VGG16FCNConfig) -> FCN:
    """FCN-8s trained all at once (voc-fcn8s-atonce): pool4 x 0.01 and pool3 x 0.0001."""
    return _vgg16_fcn(config, ("pool4", "pool3"), skip_scales=AT_ONCE_SKIP_SCALES)


@builder(AlexNetFCNConfig)
def fcn_alexnet(config: AlexNetFCNConfig) -> FCN:
    """FCN-AlexNet (voc-fcn-alexnet, Table 1): CaffeNet's fc7 scores upsampled 32x."""
    backbone = AlexNet(config.in_channels, width=config.width, dropout=config.dropout)
    return FCN(backbone, config.num_classes, "fc7", (), None, config.learnable_upsampling)


@builder(GoogLeNetFCNConfig)
def fcn_googlenet(config: GoogLeNetFCNConfig) -> FCN:
    """FCN-GoogLeNet (Table 1): inception_5b scores upsampled 32x, final average pool dropped."""
    backbone = GoogLeNet(config.in_channels, width=config.width, dropout=config.dropout)
    head = "inception_5b"
    return FCN(backbone, config.num_classes, head, (), None, config.learnable_upsampling)


def _fcn8s_on(backbone: Backbone, config: FCNConfig) -> FCN:
    """FCN-8s on a backbone whose taps are (stride 8, stride 16, stride 32), in that order."""
    fine, middle, coarse = (tap.name for tap in backbone.taps)
    skips = (middle, fine)
    return FCN(backbone, config.num_classes, coarse, skips, None, config.learnable_upsampling)


@builder(FCNConfig)
def fcn8s_resnet18(config: FCNConfig) -> FCN:
    """FCN-8s on ResNet-18 with BatchNorm: layer4 scores fused with layer3's and layer2's."""
    return _fcn8s_on(ResNet(18, config.in_channels, config.width), config)


@builder(FCNConfig)
def fcn8s_resnet34(config: FCNConfig) -> FCN:
    """FCN-8s on ResNet-34 with BatchNorm: layer4 scores fused with layer3's and layer2's."""
    return _fcn8s_on(ResNet(34, config.in_channels, config.width), config)


@builder(FCNConfig)
def fcn8s_resnet50(config: FCNConfig) -> FCN:
    """FCN-8s on ResNet-50 with BatchNorm: layer4 scores fused with layer3's and layer2's."""
    return _fcn8s_on(ResNet(50, config.in_channels, config.width), config)


@builder(FCNConfig)
def fcn8s_resnet101(config: FCNConfig) -> FCN:
    """FCN-8s on ResNet-101 with BatchNorm: layer4 scores fused with layer3's and layer2's."""
    return _fcn8s_on(ResNet(101, config.in_channels, config.width), config)


@builder(FCNConfig)
def fcn8s_mobilenet_v3_large(config: FCNConfig) -> FCN:
    """FCN-8s on MobileNetV3-Large with BatchNorm: block 16's scores fused with blocks 12 and 6."""
    return _fcn8s_on(MobileNetV3Large(config.in_channels, config.width), config)
