"""The image's r x r blocks stacked as channels: a full-resolution input at a coarser grid.

Halving a road scene before an FCN sees it (to train on a CPU) blurs what is one or two pixels
wide, poles and signs, into its surroundings, in the image and in the labels. Space-to-depth
(``F.pixel_unshuffle``) keeps every pixel: an ``H x W`` image of C channels becomes an
``H/r x W/r`` one of ``C r^2`` channels, so the net after it runs at the coarser grid's cost
while its first convolution still sees each pixel on its own, and its scores are upsampled to
the full-size image (and labels). The final upsampling of the FCN head then spans ``r`` times
more: the head plans it from the coordinate map, as for any other layer.
"""

from __future__ import annotations

from fractions import Fraction

import torch.nn.functional as F
from torch import Tensor, nn

from fcnseg.models.geometry import CoordMap


class SpaceToDepth(nn.Module):
    """``forward(N x C x H x W) -> N x (C r^2) x ceil(H/r) x ceil(W/r)``.

    An input whose sides are not multiples of ``r`` is first padded at the bottom and right by
    repeating its last row and column (the FCN head crops its scores back to ``H x W``). Channel
    ``c r^2 + i r + j`` of output cell ``(y, x)`` is input pixel ``(r y + i, r x + j)`` of channel
    ``c``, as in ``F.pixel_unshuffle``.
    """

    def __init__(self, factor: int) -> None:
        super().__init__()
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise ValueError(f"space-to-depth factor must be an integer >= 1, got {factor!r}")
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        r = self.factor
        pad_bottom, pad_right = -x.shape[-2] % r, -x.shape[-1] % r
        if pad_bottom or pad_right:
            x = F.pad(x, (0, pad_right, 0, pad_bottom), mode="replicate")
        return F.pixel_unshuffle(x, r)

    def coord_map(self) -> CoordMap:
        """Cell ``y`` holds pixels ``r y ... r y + r - 1``, centred on ``r y + (r - 1) / 2``: the
        map of an ``r x r`` convolution of stride ``r`` without padding."""
        r = self.factor
        return CoordMap(Fraction(1, r), -Fraction(r - 1, 2 * r))

    def receptive_field(self) -> tuple[int, int]:
        """(size, stride) in input pixels of one output cell: ``(r, r)``."""
        return self.factor, self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
