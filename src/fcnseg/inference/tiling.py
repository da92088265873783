"""Sliding-window (tiled) inference: any image size in memory that grows with its width only.

An FCN scores an image of any size in one pass (Long et al., section 3), but its activations
grow with the image's area: a 100-megapixel aerial tile does not fit. Tiled inference scores
overlapping windows and blends their class probabilities where they overlap.

How close this comes to scoring the whole image depends on the receptive field ``R`` of the
coarsest scores (:func:`net_geometry`; 404 pixels for VGG16, Table 1 of the paper): a score
depends on the ``R x R`` input window around it, so within ``R / 2`` of a tile's inner edge
the net sees zero padding where the whole image has content. The blend trusts each tile only
away from its edges, so a pixel is scored by a tile whose edge is at least ``3/8`` of the
overlap away. Measured on an untrained VGG16 FCN-8s (the worst case: nothing taught it to
ignore padding) on 720 x 960 synthetic images with 512-pixel tiles, five seeds (see
``tests/inference/test_tiling.py``): an overlap of half the field (224) keeps 95.5-99.9 %
of labels, one of the whole field (416) 99.7-99.99 %, and beyond ``R / 2`` from every inner
edge the probabilities are those of the whole image to float rounding. A trained net is
confident where its padding-free context already decides, and agrees far more: on CamVid val
frames (upscaled 2x, 768-pixel tiles) half the field keeps 99.96 % of labels with a net
trained for 150 iterations (the test's), and mean IU moves by under 0.001
(``benchmarks/tile_agreement.py``). The default overlap is half the field (fast); raise it
towards ``R`` for near-exact seams with an untrained or unsure net.

Geometry:

- Tile origins are multiples of the net's coarsest stride (32 for VGG16, in input pixels,
  divided by the input scale), so every tile's coarse score grid lies on the whole image's;
  ``tile - overlap`` is rounded down to such a multiple, which can only widen the overlap.
- Tiles are placed left to right and top to bottom until one reaches the image's edge; that
  last tile is clipped by the edge (it is at least ``overlap`` wide), never shifted off-grid.
- Blending weights (:meth:`TilePlan.weights`) cross-fade linearly over the middle quarter of
  each overlap (``BLEND``), on inner edges only, and are normalised by their sum (separable,
  since tiles form a grid).

Memory: tiles are scored band by band (one row of tiles), left to right. The part of a tile
that no later tile overlaps is final as soon as the tile is added, and is handed out
(``on_block``); what the next tile or the next band shares is kept: a ``K x overlap x W``
float32 strip for the band below and a ``K x tile x overlap`` one beside. Peak memory is
those strips plus a batch of tiles through the net: it grows with the tile size and the
image width, not its area. (The caller's outputs, e.g. a uint8 ``H x W`` label map, are on
top.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fcnseg.inference.predict import SegmentError

# Images above this many pixels are tiled automatically by fcnseg.segment (a 2000 x 2000
# image is scored whole; a 4000 x 3000 photo is tiled).
TILE_ABOVE = 4_000_000
# The automatic tile side, in pixels the net sees (input pixels times the input scale). With
# the default overlap (224 px for VGG16) 1024 keeps the time per megapixel within 1.3x of
# whole-image inference and a 10000 x 10000 image under 2 GB (benchmarks/tiled_memory.py).
AUTO_TILE = 1024

# The share of an overlap over which two tiles' weights cross-fade (the middle of it), and
# the weight of a tile's pixels nearer its edge (kept above 0 so sums never vanish).
BLEND = 0.25
WEIGHT_FLOOR = 1e-6

# (score of a batch of tiles (N, C, h, w) raw -> probabilities (N, K, h, w))
Score = Callable[[Tensor], Tensor]
# (first row y, first column x, final probabilities of that block (K, h, w)) -> None
BlockSink = Callable[[int, int, Tensor], None]


def net_geometry(model: nn.Module) -> tuple[int, int]:
    """(receptive field, stride) in input pixels of the net's coarsest scores.

    Read from the backbone layers through the scored tap with
    :func:`fcnseg.models.zoo.receptive_field` (which extends
    :func:`fcnseg.models.geometry.receptive_field` to branchy modules). For a net made of
    several FCNs (late fusion), the largest. Raises :class:`SegmentError` for a net it cannot
    read; pass ``overlap`` explicitly then.
    """
    from fcnseg.models.zoo import receptive_field

    found = []
    for module in model.modules():
        backbone, head = getattr(module, "backbone", None), getattr(module, "head", None)
        if isinstance(head, str) and hasattr(backbone, "layers_through"):
            found.append(receptive_field(backbone.layers_through(head)))
    if not found:
        raise SegmentError(
            f"cannot read the receptive field of {type(model).__name__} (no backbone and head); "
            "give the tile overlap explicitly"
        )
    return max(found)


@dataclass(frozen=True)
class TilePlan:
    """Tiles of ``tile`` x ``tile`` input pixels overlapping by at least ``overlap``, with
    origins on multiples of ``align`` (the net's stride in input pixels)."""

    tile: int
    overlap: int
    align: int = 1

    def __post_init__(self) -> None:
        if self.align < 1:
            raise SegmentError(f"tile alignment must be >= 1 pixel, got {self.align}")
        if self.tile < self.align:
            raise SegmentError(
                f"tile {self.tile} is smaller than the net's stride ({self.align} input pixels)"
            )
        if not 0 <= self.overlap < self.tile:
            raise SegmentError(
                f"overlap must lie in 0..tile-1 ({self.tile - 1}), got {self.overlap}"
            )
        if self.step < self.align:
            raise SegmentError(
                f"tile {self.tile} minus overlap {self.overlap} is less than the net's stride "
                f"({self.align} input pixels); use a larger tile or a smaller overlap"
            )

    @property
    def step(self) -> int:
        """Distance between tile origins: ``tile - overlap`` rounded down to ``align``."""
        return (self.tile - self.overlap) // self.align * self.align

    def starts(self, length: int) -> list[int]:
        """Tile origins along an axis of ``length`` pixels (the last tile reaches the end)."""
        starts = [0]
        while starts[-1] + self.tile < length:
            starts.append(starts[-1] + self.step)
        return starts

    def weights(self, start: int, length: int) -> Tensor:
        """Blending weights (float32, > 0) of the tile at ``start`` along an axis of ``length``.

        Across the ``o = tile - step`` pixels it shares with a neighbour, the weight is
        ``WEIGHT_FLOOR`` over the outer ``(o - b) / 2`` (where the tile lacks context), rises
        linearly over the middle ``b = BLEND * o`` pixels and is 1 beyond; the two ramps of a
        seam sum to 1, so the blend is seamless and trusts each tile only away from its edge.
        """
        end = min(start + self.tile, length)
        shared = self.tile - self.step
        distance = torch.arange(end - start, dtype=torch.float32)
        weight = torch.ones(end - start)
        if shared > 0:
            ramp = max(1.0, BLEND * shared)
            lead = (shared - ramp) / 2

            def rise(d: Tensor) -> Tensor:
                return ((d + 0.5 - lead) / ramp).clamp(WEIGHT_FLOOR, 1.0)

            if start > 0:
                weight = torch.minimum(weight, rise(distance))
            if end < length:
                weight = torch.minimum(weight, rise(end - start - 1 - distance))
        return weight

    def weight_sums(self, length: int) -> Tensor:
        """The sum of every tile's weights at each pixel of an axis: (length,) float32."""
        total = torch.zeros(length)
        for start in self.starts(length):
            total[start : start + self.tile] += self.weights(start, length)
        return total

    def count(self, height: int, width: int) -> int:
        """How many tiles an ``height x width`` image takes."""
        return len(self.starts(height)) * len(self.starts(width))


def plan_for(
    model: nn.Module, input_scale: float, tile: int | None = None, overlap: int | None = None
) -> TilePlan:
    """The tile plan for ``model``: ``tile`` (default ``AUTO_TILE / input_scale``) and
    ``overlap`` (default half the receptive field, in input pixels), origins on the stride."""
    try:
        field, stride = net_geometry(model)
    except SegmentError:
        if overlap is None:
            raise
        field, stride = 0, 1
    align = max(1, round(stride / input_scale))
    if overlap is None:
        overlap = math.ceil(field / 2 / input_scale / align) * align
    if tile is None:
        tile = max(math.ceil(AUTO_TILE / input_scale / align) * align, overlap + align)
    return TilePlan(int(tile), int(overlap), align)


def tiled_probabilities(
    score: Score,
    image: Tensor,
    num_classes: int,
    plan: TilePlan,
    on_block: BlockSink,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
) -> None:
    """Score ``image`` tile by tile and hand out blended probabilities block by block.

    ``image``: ``(C, H, W)`` raw values (uint8 or float; any device: each tile is moved to
    ``device`` and made float there). ``score`` maps a batch ``(N, C, h, w)`` of tiles to
    probabilities ``(N, K, h, w)`` on ``device`` (it may return them for reuse: they are
    modified in place). ``on_block(y, x, block)`` receives the final blended probabilities
    ``(K, h, w)`` of the image region at ``(y, x)``, once for each pixel: the part of each
    tile that no later tile overlaps, tiles in raster order. Tiles of equal size in a band
    are scored ``batch_size`` at a time.

    Memory: besides a batch of tiles, ``carry`` holds the accumulated probabilities of the
    rows the next band shares with this one (``K x overlap x W``), and ``beside`` those of the
    columns the next tile shares (``K x tile x overlap``).
    """
    _, height, width = image.shape
    rows, cols = plan.starts(height), plan.starts(width)
    col_weights = [plan.weights(x, width).to(device) for x in cols]
    norm_x = plan.weight_sums(width).to(device)  # (W,)
    norm_y = plan.weight_sums(height).to(device)  # (H,)
    shared = plan.tile - plan.step  # rows (columns) two neighbouring tiles have in common
    carry = torch.zeros(num_classes, min(shared, height), width, device=device)
    for i, y0 in enumerate(rows):
        y1 = min(y0 + plan.tile, height)
        y_end = rows[i + 1] if i + 1 < len(rows) else height  # rows [y0, y_end) end here
        row_weight = plan.weights(y0, height).to(device)[:, None]  # (h, 1)
        beside: Tensor | None = None  # (K, h, shared): the previous tile's right edge
        for first in range(0, len(cols), batch_size):
            chunk = range(first, min(first + batch_size, len(cols)))
            widths = {min(cols[j] + plan.tile, width) - cols[j] for j in chunk}
            groups = [[j for j in chunk if min(cols[j] + plan.tile, width) - cols[j] == w]
                      for w in sorted(widths, reverse=True)]  # fmt: skip
            scored = {}
            for group in groups:  # one batch per tile width (only the last tile is narrower)
                tiles = [image[:, y0:y1, cols[j] : cols[j] + plan.tile] for j in group]
                for j, p in zip(group, score(torch.stack(tiles).to(device))):
                    scored[j] = p
            for j in chunk:
                x0 = cols[j]
                x_end = cols[j + 1] if j + 1 < len(cols) else width  # columns ending here
                p = scored.pop(j).mul_(row_weight * col_weights[j][None, :])  # (K, h, w)
                w = p.shape[-1]
                if beside is not None:
                    p[:, :, :shared] += beside
                if i > 0:  # rows shared with the band above, columns not yet taken
                    start = shared if j > 0 else 0
                    p[:, :shared, start:] += carry[:, :, x0 + start : x0 + w]
                done = p[:, : y_end - y0, : x_end - x0]
                done /= norm_y[y0:y_end, None] * norm_x[None, x0:x_end]
                on_block(y0, x0, done)
                if y_end < height:
                    carry[:, :, x0:x_end] = p[:, y_end - y0 :, : x_end - x0]
                beside = p[:, :, x_end - x0 :].clone() if x_end < width else None


__all__ = [
    "AUTO_TILE",
    "TILE_ABOVE",
    "TilePlan",
    "net_geometry",
    "plan_for",
    "tiled_probabilities",
]
