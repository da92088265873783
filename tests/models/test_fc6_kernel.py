"""fc6 at another side than the classifier's 7: fewer weights, aligned in both geometries."""

from __future__ import annotations

import pytest
import torch

from fcnseg.models import MODELS, fcn8s
from fcnseg.models.surgery import TransplantError, transplant_vgg16
from fcnseg.train.build import make_model
from fcnseg.train.recipe import Recipe, RecipeError
from helpers import TorchvisionStyleVGG16, assert_peak_at_cell_centre, impulse_net


@pytest.mark.parametrize(("geometry", "padding"), [("reference", 0), ("fast", 1)])
def test_fc6_takes_the_side_and_the_fast_geometry_pads_it_to_keep_pool5s_grid(geometry, padding):
    net = fcn8s(num_classes=3, width=1 / 16, geometry=geometry, fc6_kernel=3).eval()
    seven = fcn8s(num_classes=3, width=1 / 16, geometry=geometry).eval()
    assert net.backbone.fc6.kernel_size == (3, 3) and net.backbone.fc6.padding == (padding,) * 2
    assert net.backbone.fc6.weight.shape == (256, 32, 3, 3)  # fc 4096 / 16 from pool5's 512 / 16
    assert seven.backbone.fc6.weight.shape == (256, 32, 7, 7)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert shapes.keys() == seven.state_dict().keys()
    with torch.inference_mode():
        for size in [(1, 1), (31, 33), (64, 96), (97, 65)]:
            assert net(torch.randn(1, 3, *size)).shape == (1, 3, *size), size


@pytest.mark.parametrize("geometry", ["reference", "fast"])
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_an_impulse_through_fc6_peaks_at_the_centre_of_its_cell(geometry, kernel):
    """An unpadded fc6 (reference) of side k shifts fc7 by (k - 1) / 2 cells of 32 pixels: the
    crop of the final upsampling has to follow, or the peak leaves its cell."""
    model = impulse_net("fcn32s", geometry, "score_fr", fc6_kernel=kernel)
    image = torch.zeros(1, 3, 150, 170)
    bright = (77, 101)
    image[(..., *bright)] = 1.0
    with torch.no_grad():
        out = model(image)[0, 0]
    assert_peak_at_cell_centre(out, bright, 1 - model.backbone.conv1_1.padding[0], 32)


@pytest.mark.parametrize("kernel", [0, 2, 4, -3, 3.0, True, "3"])
def test_bad_sides_are_refused_by_name(kernel):
    with pytest.raises(ValueError, match="fc6_kernel must be an odd integer >= 1"):
        MODELS["fcn2s"](num_classes=3, width=1 / 16, fc6_kernel=kernel)


def test_the_recipes_fc6_kernel_reaches_the_vgg16_net_and_no_other():
    net = make_model(Recipe(net="fcn2s", width=0.0625, fc6_kernel=3), 3, 3)
    assert net.config.fc6_kernel == 3 and net.backbone.fc6.kernel_size == (3, 3)
    with pytest.raises(RecipeError, match="has no 'fc6_kernel' setting"):
        make_model(Recipe(net="fcn8s_resnet18", fc6_kernel=3), 3, 3)


def test_a_vgg16_classifier_is_refused_with_what_to_do_instead():
    classifier = TorchvisionStyleVGG16(width=1 / 16).state_dict()
    with pytest.raises(TransplantError, match=r"fc6 is 3 x 3 \(fc6_kernel=3\), the classifier's 7"):
        transplant_vgg16(fcn8s(num_classes=3, width=1 / 16, fc6_kernel=3), classifier)
    filled = transplant_vgg16(fcn8s(num_classes=3, width=1 / 16), classifier)
    assert "backbone.fc6.weight" in filled  # the default side takes them
