"""Space-to-depth: the image's r x r blocks as channels before conv1_1, every pixel kept."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn

import fcnseg
from fcnseg.models import fcn2s
from fcnseg.models.backbones.space_to_depth import SpaceToDepth
from fcnseg.models.surgery import TransplantError, transplant_vgg16
from fcnseg.models.zoo import receptive_field
from fcnseg.train.build import make_model
from fcnseg.train.recipe import Recipe, RecipeError
from helpers import TorchvisionStyleVGG16, assert_peak_at_cell_centre, impulse_net


def test_each_pixel_lands_in_its_cell_and_channel() -> None:
    x = torch.randn(2, 3, 6, 8)
    out = SpaceToDepth(2)(x)
    assert out.shape == (2, 12, 3, 4)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                assert torch.equal(out[:, c * 4 + i * 2 + j], x[:, c, i::2, j::2])


def test_odd_sides_repeat_the_last_row_and_column() -> None:
    x = torch.randn(1, 1, 5, 7)
    out = SpaceToDepth(3)(x)  # padded to 6 x 9
    assert out.shape == (1, 9, 2, 3)
    padded = torch.cat([x, x[:, :, -1:]], dim=2)
    padded = torch.cat([padded, padded[..., -1:], padded[..., -1:]], dim=3)
    assert torch.equal(out, nn.functional.pixel_unshuffle(padded, 3))


def test_its_coordinate_map_and_receptive_field_are_those_of_its_cells() -> None:
    coord = SpaceToDepth(2).coord_map()  # pixels 2y, 2y + 1 are centred on 2y + 1/2
    assert (coord.scale, coord.shift) == (Fraction(1, 2), Fraction(-1, 4))
    assert coord.inverse().scale * 3 + coord.inverse().shift == Fraction(13, 2)
    assert SpaceToDepth(4).receptive_field() == (4, 4)
    plain = fcn2s(num_classes=3, width=1 / 16, geometry="fast").backbone
    stacked = fcn2s(num_classes=3, width=1 / 16, geometry="fast", space_to_depth=2).backbone
    size, stride = receptive_field(plain.layers_through("fc7"))
    assert receptive_field(stacked.layers_through("fc7")) == (2 * size, 2 * stride)


@pytest.mark.parametrize("factor", [0, -2, 1.5, True, "2"])
def test_bad_factors_are_refused_by_name(factor) -> None:
    with pytest.raises(ValueError, match="space_to_depth must be an integer >= 1"):
        fcn2s(num_classes=3, width=1 / 16, space_to_depth=factor)
    with pytest.raises(ValueError, match="space-to-depth factor must be an integer >= 1"):
        SpaceToDepth(factor)


def test_the_net_runs_r_times_coarser_and_scores_every_pixel() -> None:
    plain = fcn2s(num_classes=3, width=1 / 16, geometry="fast", batch_norm=True).eval()
    net = fcn2s(num_classes=3, width=1 / 16, geometry="fast", batch_norm=True, space_to_depth=2)
    net.eval()
    assert [tap.stride for tap in net.backbone.taps] == [4, 8, 16, 32, 64]
    assert net.backbone.conv1_1.in_channels == 12 and "space_to_depth" not in dict(
        plain.backbone.named_children()
    )
    # Same layers but conv1_1's input and the last upsampling: 4x (kernel 8) where it was 2x.
    plain_shapes = {k: v.shape for k, v in plain.state_dict().items()}
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert set(plain_shapes) - set(shapes) == {"upscore_pool1.weight"}
    assert set(shapes) - set(plain_shapes) == {"upscore4.weight"}
    assert shapes["upscore4.weight"] == (3, 3, 8, 8)
    assert {k for k in shapes if k in plain_shapes and shapes[k] != plain_shapes[k]} == {
        "backbone.conv1_1.weight"
    }
    sizes = [(1, 1), (2, 3), (31, 33), (64, 64), (65, 97), (360, 480)]
    seen = {}
    hook = net.backbone.conv1_1.register_forward_hook(
        lambda module, inputs, output: seen.__setitem__("conv1_1", tuple(output.shape[-2:]))
    )
    with torch.inference_mode():
        for size in sizes:
            assert net(torch.randn(1, 3, *size)).shape == (1, 3, *size), size
            assert seen["conv1_1"] == (-(-size[0] // 2), -(-size[1] // 2))
    hook.remove()


@pytest.mark.parametrize("size", [(140, 180), (141, 179)])
@pytest.mark.parametrize("geometry", ["reference", "fast"])
@pytest.mark.parametrize(
    ("arch", "path", "stride"),
    [
        ("fcn32s", "score_fr", 64),
        ("fcn8s", "score_pool3", 16),
        ("fcn4s", "score_pool2", 8),
        ("fcn2s", "score_pool1", 4),
    ],
)
def test_an_impulse_peaks_at_the_centre_of_its_cell(arch, path, stride, geometry, size) -> None:
    """Cells of 2 x 2 pixels start at pixel 0, so conv1_1's grid (padded by 100 cells in the
    reference geometry) starts at pixel 2 (1 - padding); a tap of stride ``s`` groups ``s``
    pixels, and the output must peak symmetrically about the centre of the group holding the
    bright pixel: a crop or an upsampling kernel off by one pixel moves the peak."""
    model = impulse_net(arch, geometry, path, space_to_depth=2)
    image = torch.zeros(1, 3, *size)
    bright = (77, 101)
    image[(..., *bright)] = 1.0
    with torch.no_grad():
        out = model(image)[0, 0]
    assert out.shape == size
    assert_peak_at_cell_centre(out, bright, 2 * (1 - model.backbone.conv1_1.padding[0]), stride)


def test_save_load_keeps_it(tmp_path) -> None:
    net = fcn2s(num_classes=3, width=1 / 16, geometry="fast", batch_norm=True, space_to_depth=2)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(std=0.1)
    net.eval()
    loaded = fcnseg.load(fcnseg.save(net, tmp_path / "s2d.pt")).eval()
    assert loaded.config.space_to_depth == 2
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_the_recipes_space_to_depth_reaches_the_vgg16_net_and_no_other() -> None:
    net = make_model(Recipe(net="fcn8s", width=0.0625, space_to_depth=2), 3, 3)
    assert isinstance(net.backbone.space_to_depth, SpaceToDepth)
    assert net.config.space_to_depth == 2 and net.backbone.conv1_1.in_channels == 12
    with pytest.raises(RecipeError, match="has no 'space_to_depth' setting"):
        make_model(Recipe(net="fcn8s_resnet18", space_to_depth=2), 3, 3)
    with pytest.raises(RecipeError, match="space_to_depth must be an integer >= 1"):
        make_model(Recipe(net="fcn8s", width=0.0625, space_to_depth=0), 3, 3)


def test_a_vgg16_classifier_is_refused_with_what_to_do_instead() -> None:
    """Its conv1_1 sees single pixels; a space-to-depth net's sees 2 x 2 blocks: widening it as
    for early fusion would give the R, G, B filters to three pixels of the red channel."""
    net = fcn2s(num_classes=3, width=1 / 16, geometry="fast", space_to_depth=2)
    classifier = TorchvisionStyleVGG16(width=1 / 16).state_dict()
    for extra_channels in (None, "mean"):
        with pytest.raises(TransplantError, match=r"2 x 2 pixel blocks .* \(init = 'none'\)"):
            transplant_vgg16(net, classifier, extra_channels)
