"""Fully Convolutional Networks: a backbone, a 1x1 score layer, skips and in-net upsampling.

Section 4.2 of Long, Shelhamer & Darrell: FCN-32s upsamples the stride-32 scores of ``fc7``
straight to the image. FCN-16s first upsamples them 2x, adds scores predicted from ``pool4``
and upsamples the sum 16x; FCN-8s adds ``pool3`` the same way and upsamples 8x. Each skip is
cropped onto the coarser scores, and the final scores onto the image, at offsets derived from
the layer geometry (:mod:`fcnseg.models.geometry`). The "at-once" FCN-8s (PAMI version, 5.1)
trains all skips together, scaling ``pool4`` by 0.01 and ``pool3`` by 0.0001 before scoring.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fcnseg.models.backbones import VGG16, Backbone
from fcnseg.models.geometry import CoordMap, crop_offset, layer_coord_map
from fcnseg.models.upsample import bilinear_upsampling

# Fixed skip scales of the at-once FCN-8s (PAMI 2016): the skip features are orders of
# magnitude larger than fc7's, and the scales keep early training from being swamped by them.
AT_ONCE_SKIP_SCALES = {"pool4": 0.01, "pool3": 0.0001}


def _crop(x: Tensor, offset: int, height: int, width: int) -> Tensor:
    return x[:, :, offset : offset + height, offset : offset + width]


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

    Layer names follow the reference: ``score_fr``, ``score_<tap>``, ``upscore2`` for the first
    2x upsampling, ``upscore_<tap>`` for later ones, and ``upscore<stride>`` for the final one
    (plain ``upscore`` when there are no skips, as in voc-fcn32s).
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        head: str = "fc7",
        skips: Sequence[str] = (),
        skip_scales: dict[str, float] | None = None,
        learnable_upsampling: bool = False,
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
        for name, scale in skip_scales.items():
            self.register_buffer(f"scale_{name}", torch.tensor(float(scale)))

        # Walk coarse to fine, tracking where the running scores sit in the image.
        scores_map = backbone.coord_map(head)
        stride = head_tap.stride
        self.skip_offsets: list[int] = []
        previous = None
        for tap_name in self.skips:
            tap = backbone.tap(tap_name)
            if tap.stride * 2 != stride:
                raise ValueError(f"skip {tap_name} has stride {tap.stride}, expected {stride // 2}")
            upscore = bilinear_upsampling(num_classes, 2, learnable_upsampling)
            self.add_module("upscore2" if previous is None else f"upscore_{previous}", upscore)
            self.add_module(f"score_{tap_name}", self._score_layer(tap.channels))
            scores_map = scores_map.then(layer_coord_map(upscore))
            self.skip_offsets.append(crop_offset(backbone.coord_map(tap_name), scores_map))
            stride, previous = tap.stride, tap_name
        final = bilinear_upsampling(num_classes, stride, learnable_upsampling)
        self.final_upscore_name = f"upscore{stride}" if self.skips else "upscore"
        self.add_module(self.final_upscore_name, final)
        scores_map = scores_map.then(layer_coord_map(final))
        self.final_offset = crop_offset(scores_map, CoordMap())

    def _score_layer(self, channels: int) -> nn.Conv2d:
        score = nn.Conv2d(channels, self.num_classes, 1)
        nn.init.zeros_(score.weight)  # section 4.3: zero-initialised class scores
        nn.init.zeros_(score.bias)
        return score

    def upsampling_layers(self) -> list[nn.ConvTranspose2d]:
        """The transposed convolutions, coarse to fine."""
        names = ["upscore2"] + [f"upscore_{tap}" for tap in self.skips[:-1]]
        return [getattr(self, n) for n in names[: len(self.skips)]] + [
            getattr(self, self.final_upscore_name)
        ]

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        features = self.backbone(x)
        score = self.score_fr(features[self.head])  # (N, K, H/32 + ..., W/32 + ...)
        upsampling = self.upsampling_layers()
        for tap, upscore, offset in zip(self.skips, upsampling, self.skip_offsets):
            score = upscore(score)  # (N, K, 2h + 2, 2w + 2)
            skip = features[tap]
            scale = getattr(self, f"scale_{tap}", None)
            if scale is not None:
                skip = skip * scale
            skip = getattr(self, f"score_{tap}")(skip)  # (N, K, finer h, finer w)
            score = score + _crop(skip, offset, score.shape[-2], score.shape[-1])
        score = upsampling[-1](score)  # (N, K, >= H + offset, >= W + offset)
        return _crop(score, self.final_offset, height, width)  # (N, K, H, W)


def _vgg16_fcn(
    arch: str,
    skips: Sequence[str],
    num_classes: int,
    in_channels: int,
    width: float,
    batch_norm: bool,
    learnable_upsampling: bool,
    dropout: float,
    skip_scales: dict[str, float] | None = None,
) -> FCN:
    backbone = VGG16(in_channels, width=width, batch_norm=batch_norm, dropout=dropout)
    model = FCN(backbone, num_classes, "fc7", skips, skip_scales, learnable_upsampling)
    model.arch = arch
    model.settings = {
        "num_classes": num_classes,
        "in_channels": in_channels,
        "width": width,
        "batch_norm": batch_norm,
        "learnable_upsampling": learnable_upsampling,
        "dropout": dropout,
    }
    return model


def fcn32s(
    num_classes: int = 21,
    in_channels: int = 3,
    width: float = 1.0,
    batch_norm: bool = False,
    learnable_upsampling: bool = False,
    dropout: float = 0.5,
) -> FCN:
    """FCN-32s on VGG16 (voc-fcn32s): fc7 scores upsampled 32x in one step."""
    return _vgg16_fcn(
        "fcn32s", (), num_classes, in_channels, width, batch_norm, learnable_upsampling, dropout
    )


def fcn16s(
    num_classes: int = 21,
    in_channels: int = 3,
    width: float = 1.0,
    batch_norm: bool = False,
    learnable_upsampling: bool = False,
    dropout: float = 0.5,
) -> FCN:
    """FCN-16s on VGG16 (voc-fcn16s): fc7 scores fused with pool4's, upsampled 16x."""
    return _vgg16_fcn(
        "fcn16s",
        ("pool4",),
        num_classes,
        in_channels,
        width,
        batch_norm,
        learnable_upsampling,
        dropout,
    )


def fcn8s(
    num_classes: int = 21,
    in_channels: int = 3,
    width: float = 1.0,
    batch_norm: bool = False,
    learnable_upsampling: bool = False,
    dropout: float = 0.5,
) -> FCN:
    """FCN-8s on VGG16 (voc-fcn8s): fused with pool4's and then pool3's scores, upsampled 8x."""
    return _vgg16_fcn(
        "fcn8s",
        ("pool4", "pool3"),
        num_classes,
        in_channels,
        width,
        batch_norm,
        learnable_upsampling,
        dropout,
    )


def fcn8s_atonce(
    num_classes: int = 21,
    in_channels: int = 3,
    width: float = 1.0,
    batch_norm: bool = False,
    learnable_upsampling: bool = False,
    dropout: float = 0.5,
) -> FCN:
    """FCN-8s trained all at once (voc-fcn8s-atonce): pool4 x 0.01 and pool3 x 0.0001."""
    return _vgg16_fcn(
        "fcn8s_atonce",
        ("pool4", "pool3"),
        num_classes,
        in_channels,
        width,
        batch_norm,
        learnable_upsampling,
        dropout,
        skip_scales=AT_ONCE_SKIP_SCALES,
    )


BUILDERS = {
    "fcn32s": fcn32s,
    "fcn16s": fcn16s,
    "fcn8s": fcn8s,
    "fcn8s_atonce": fcn8s_atonce,
}
