"""One backbone, two heads: semantic and geometric labelling of SIFT Flow (section 5).

SIFT Flow labels every pixel twice: one of 33 semantic classes (bridge, building, ...) and
one of 3 geometric classes (sky, horizontal, vertical). The paper trains "a two-headed version
of FCN-16s with semantic and geometric prediction layers and losses", which does as well on
both tasks as two separate nets at nearly the cost of one. The reference siftflow-fcn nets
give each head its own score layers, skips and upsampling, suffixed ``_sem`` and ``_geo``
(``score_fr_sem``, ``upscore2_sem``, ``score_pool4_sem``, ... ``upscore8_geo``); the layers
here carry exactly those names.

``forward`` returns a dict ``{"semantic": N x K_sem x H x W, "geometric": N x K_geo x H x W}``:
the heads are named where they are used, and ``torch.onnx.export`` flattens it to two outputs.
The summed loss and the per-head confusion matrices are in :mod:`fcnseg.train.multitask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from fcnseg.models.backbones import Backbone
from fcnseg.models.config import builder
from fcnseg.models.fcn import (
    VGG16FCNConfig,
    _crop,
    _overlap,
    _upsampling,
    plan_upsampling,
    score_layer,
    upsampling_names,
    vgg16_backbone,
)

# Output name -> the suffix of its layers in the reference nets.
HEADS = {"semantic": "_sem", "geometric": "_geo"}


class TwoHeadedFCN(nn.Module):
    """An FCN with one backbone and a semantic and a geometric head.

    ``forward(N x C x H x W) -> {"semantic": N x K_sem x H x W, "geometric": N x K_geo x H x W}``.

    Args:
        backbone: returns the taps named by ``head`` and ``skips``.
        num_classes: semantic classes (33 on SIFT Flow).
        num_geometric: geometric classes (3: sky, horizontal, vertical).
        head, skips, learnable_upsampling: as for :class:`~fcnseg.models.fcn.FCN`.

    Each head has its own zero-initialised score layers and bilinear upsampling, named as the
    reference's with ``_sem`` or ``_geo`` appended (``score_fr_sem``, ``upscore2_geo``,
    ``score_pool4_sem``, ``upscore_pool4_geo``, ``upscore8_sem``). Both heads read the same
    taps, so they share ``alignments``, ``skip_offsets``, ``score_offsets``, ``final_offset``.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int = 33,
        num_geometric: int = 3,
        head: str = "fc7",
        skips: Sequence[str] = ("pool4", "pool3"),
        learnable_upsampling: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = {"semantic": num_classes, "geometric": num_geometric}
        for output, count in self.num_classes.items():
            if count < 1:
                raise ValueError(f"{output} classes must be >= 1, got {count}")
        self.backbone = backbone
        self.head = head
        self.skips = tuple(skips)
        self.alignments = plan_upsampling(backbone, head, self.skips)
        self.skip_offsets: list[int] = [a.target_crop for a in self.alignments[:-1]]
        self.score_offsets: list[int] = [a.score_crop for a in self.alignments[:-1]]
        self.final_offset = self.alignments[-1].score_crop
        # names before the suffix, as FCN's: upscore2, upscore_<tap>, ..., upscore<stride>
        self.upsampling_names = upsampling_names(self.skips, self.alignments[-1].factor)

        for output, suffix in HEADS.items():
            count = self.num_classes[output]
            self.add_module(f"score_fr{suffix}", score_layer(backbone.tap(head).channels, count))
            for tap in self.skips:
                layer = score_layer(backbone.tap(tap).channels, count)
                self.add_module(f"score_{tap}{suffix}", layer)
            for name, align in zip(self.upsampling_names, self.alignments):
                self.add_module(f"{name}{suffix}", _upsampling(count, align, learnable_upsampling))

    def _scores(self, features: dict[str, Tensor], suffix: str, height: int, width: int) -> Tensor:
        """One head's scores (N, K, H, W), computed as :class:`~fcnseg.models.fcn.FCN` does."""
        score = getattr(self, f"score_fr{suffix}")(features[self.head])  # (N, K, H/32+, W/32+)
        upsampling = [getattr(self, f"{name}{suffix}") for name in self.upsampling_names]
        for tap, upscore, score_crop, skip_crop in zip(
            self.skips, upsampling, self.score_offsets, self.skip_offsets
        ):
            score = upscore(score)  # (N, K, 2h + k - 2, 2w + k - 2)
            skip = getattr(self, f"score_{tap}{suffix}")(features[tap])  # (N, K, finer h, w)
            score, skip = _overlap(score, score_crop, skip, skip_crop)  # on the skip's grid
            score = score + skip
        score = upsampling[-1](score)  # (N, K, >= H + offset, >= W + offset)
        return _crop(score, self.final_offset, height, width)  # (N, K, H, W)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        height, width = x.shape[-2:]
        features = self.backbone(x)  # computed once, read by both heads
        return {
            output: self._scores(features, suffix, height, width)
            for output, suffix in HEADS.items()
        }


@dataclass(frozen=True)
class TwoHeadedConfig(VGG16FCNConfig):
    """Settings of the two-headed VGG16 FCNs: the VGG16 FCN's, with SIFT Flow's defaults."""

    num_classes: int = 33  # semantic classes (SIFT Flow's 33)
    num_geometric: int = 3  # geometric classes (sky, horizontal, vertical)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.global_context:
            raise ValueError("global_context is for one-headed nets; the two-headed have none")


def _vgg16_two_headed(config: TwoHeadedConfig, skips: Sequence[str]) -> TwoHeadedFCN:
    return TwoHeadedFCN(
        vgg16_backbone(config),
        config.num_classes,
        config.num_geometric,
        "fc7",
        skips,
        config.learnable_upsampling,
    )


@builder(TwoHeadedConfig)
def fcn32s_two_headed(config: TwoHeadedConfig) -> TwoHeadedFCN:
    """Two-headed FCN-32s on VGG16 (siftflow-fcn32s): the first stage of the SIFT Flow nets."""
    return _vgg16_two_headed(config, ())


@builder(TwoHeadedConfig)
def fcn16s_two_headed(config: TwoHeadedConfig) -> TwoHeadedFCN:
    """Two-headed FCN-16s on VGG16 (siftflow-fcn16s, the paper's SIFT Flow net)."""
    return _vgg16_two_headed(config, ("pool4",))


@builder(TwoHeadedConfig)
def fcn8s_two_headed(config: TwoHeadedConfig) -> TwoHeadedFCN:
    """Two-headed FCN-8s on VGG16 (siftflow-fcn8s): semantic and geometric scores at once.

    ``forward`` returns ``{"semantic": N x num_classes x H x W, "geometric": N x num_geometric
    x H x W}``; ``geometry`` as for :func:`~fcnseg.models.fcn.fcn8s`.
    """
    return _vgg16_two_headed(config, ("pool4", "pool3"))
