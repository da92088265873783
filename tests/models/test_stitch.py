"""Shift-and-stitch equals filter rarefaction (section 3.2), exactly on unpadded nets."""

import pytest
import torch
from torch import nn

from fcnseg.models import VGG16
from fcnseg.models.stitch import rarefy, shift_and_stitch


def _valid_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(4, 5, 3), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(5, 6, 3, stride=2), nn.ReLU(),
        nn.Conv2d(6, 3, 1),
    ).double().eval()  # fmt: skip


def _compare(coarse_net, stride, x):
    with torch.no_grad():
        stitched = shift_and_stitch(coarse_net, x, stride)
        dense = rarefy(coarse_net)(x)
    h, w = dense.shape[-2:]
    # Caffe-style ceil-mode pooling adds partial windows at the far border of a shifted input;
    # the pixels whose windows lie wholly inside the image are the dense net's.
    assert stitched.shape[-2] >= h and stitched.shape[-1] >= w
    stitched = stitched[:, :, :h, :w]
    assert not stitched.isnan().any()
    torch.testing.assert_close(stitched, dense)
    return dense


@pytest.mark.parametrize("size", [(37, 41), (50, 50)])
def test_shift_and_stitch_equals_rarefaction(size):
    net = _valid_net()  # output stride 2 * 2 * 2 = 8
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    dense = _compare(net, 8, x)
    # The dense net's output at a stride-8 lattice is the coarse net's output.
    with torch.no_grad():
        coarse = net(x)
    torch.testing.assert_close(
        dense[:, :, ::8, ::8][:, :, : coarse.shape[-2], : coarse.shape[-1]], coarse
    )


def test_on_vgg16_layers_through_pool3():
    backbone = VGG16(width=1 / 16, conv1_padding=0, padding=0).double().eval()
    through_pool3 = nn.Sequential(*backbone.layers_through("pool3"))
    x = torch.randn(1, 3, 61, 58, dtype=torch.float64)
    _compare(through_pool3, 8, x)


def test_rarefy_from_a_layer_and_backbone_taps():
    backbone = VGG16(width=1 / 16, conv1_padding=0, padding=0)
    dense = rarefy(backbone, start="pool4")
    assert [(t.name, t.stride) for t in dense.taps] == [
        ("pool1", 2),  # before pool4: untouched
        ("pool2", 4),
        ("pool3", 8),
        ("pool4", 8),
        ("fc7", 8),
    ]
    assert dense.fc6.dilation == (4, 4) and dense.pool4.stride == 1 and dense.pool5.dilation == 2
    assert backbone.pool4.stride == 2  # the original is untouched
    with pytest.raises(KeyError, match="no layer"):
        rarefy(backbone, start="pool9")


def test_shift_and_stitch_cost_is_f_squared_passes():
    calls = []

    def net(x):
        calls.append(tuple(x.shape))
        return x[:, :, ::4, ::4]

    out = shift_and_stitch(net, torch.arange(64.0).reshape(1, 1, 8, 8), 4)
    assert len(calls) == 16
    torch.testing.assert_close(out, torch.arange(64.0).reshape(1, 1, 8, 8))
