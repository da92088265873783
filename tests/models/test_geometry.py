"""Coordinate maps and crop offsets, checked by hand and against the reference nets."""

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.models import VGG16
from fcnseg.models.geometry import (
    CoordMap,
    compose,
    crop_offset,
    layer_coord_map,
    receptive_field,
)
from fcnseg.models.upsample import bilinear_kernel, bilinear_upsampling, bilinear_weight


def test_layer_maps_by_hand():
    assert layer_coord_map(nn.Conv2d(1, 1, 3, padding=100)) == CoordMap(1, 99)
    assert layer_coord_map(nn.Conv2d(1, 1, 3, padding=1)) == CoordMap(1, 0)
    assert layer_coord_map(nn.MaxPool2d(2, 2, ceil_mode=True)) == CoordMap(
        Fraction(1, 2), Fraction(-1, 4)
    )
    assert layer_coord_map(nn.Conv2d(1, 1, 7)) == CoordMap(1, -3)
    assert layer_coord_map(nn.ConvTranspose2d(1, 1, 4, 2)) == CoordMap(2, Fraction(3, 2))
    assert layer_coord_map(nn.Conv2d(1, 1, 3, padding=2, dilation=2)) == CoordMap(1, 0)
    assert layer_coord_map(nn.ReLU()) == CoordMap()
    with pytest.raises(TypeError, match="no coordinate map"):
        layer_coord_map(nn.LSTM(1, 1))


def test_vgg16_tap_maps():
    backbone = VGG16(width=1 / 16)
    assert backbone.coord_map("pool4") == CoordMap(Fraction(1, 16), Fraction(183, 32))
    assert backbone.coord_map("fc7") == CoordMap(Fraction(1, 32), Fraction(-25, 64))


def test_crop_offset_rejects_misaligned_blobs():
    with pytest.raises(ValueError, match="strides"):
        crop_offset(CoordMap(Fraction(1, 2), 0), CoordMap(1, 0))
    with pytest.raises(ValueError, match="integer"):
        crop_offset(CoordMap(1, Fraction(1, 2)), CoordMap(1, 0))


def test_receptive_field_of_vgg16():
    # VGG16's pool5 cells see 212 pixels at stride 32; fc6 (7x7) then sees 404.
    layers = list(VGG16(width=1 / 16).children())
    fc6 = [n for n, _ in VGG16(width=1 / 16).named_children()].index("fc6")
    assert receptive_field(layers[:fc6]) == (212, 32)
    assert receptive_field(layers) == (404, 32)


def test_bilinear_kernel_values():
    k = bilinear_kernel(4)
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(k, torch.outer(taps, taps))
    w = bilinear_weight(3, 4)
    assert torch.count_nonzero(w[0, 1]) == 0 and torch.equal(w[2, 2], k)


@pytest.mark.parametrize("factor", [2, 4, 8, 16, 32])
def test_bilinear_deconvolution_equals_bilinear_interpolation(factor):
    """Transposed conv (2f, stride f) + the crop from the coordinate maps == interpolation."""
    coarse = torch.randn(1, 3, 7, 9, dtype=torch.float64)
    up = bilinear_upsampling(3, factor).double()
    # The crop aligning the upsampled map with the grid the coarse map was pooled from.
    pool = nn.AvgPool2d(factor, factor)
    offset = crop_offset(compose([pool, up]), CoordMap())
    assert offset == factor // 2
    with torch.no_grad():
        fine = up(coarse)[:, :, offset : offset + 7 * factor, offset : offset + 9 * factor]
    expected = F.interpolate(coarse, scale_factor=factor, mode="bilinear", align_corners=False)
    # Away from the borders, where interpolation clamps and the deconvolution fades to zero.
    inner = (slice(None), slice(None), slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(fine[inner], expected[inner])
