"""VGG16 nets without the reference's 100-pixel padding: same weights, aligned, far cheaper."""

import math

import pytest
import torch

import fcnseg
from fcnseg.models import MODELS
from helpers import assert_peak_at_cell_centre, impulse_net

VGG = ["fcn32s", "fcn16s", "fcn8s", "fcn4s", "fcn2s", "fcn8s_atonce"]


def tiny(arch, geometry, **kwargs):
    return MODELS[arch](num_classes=3, width=1 / 16, geometry=geometry, **kwargs)


@pytest.mark.parametrize("arch", ["fcn32s", "fcn8s", "fcn4s", "fcn2s"])
def test_output_size_equals_input_size(arch):
    model = tiny(arch, "fast").eval()
    sizes = [(1, 1), (1, 7), (17, 1), (2, 2), (31, 33), (32, 32), (63, 65), (360, 480)]
    with torch.inference_mode():
        for size in sizes:
            assert model(torch.randn(1, 3, *size)).shape == (1, 3, *size), size


def test_derived_offsets():
    """fc7 sits at x/32 - 31/64, pool4 at x/16 - 15/32, pool3 at x/8 - 7/16, pool2 at
    x/4 - 3/8: each 2x upscore (k4, no padding) starts one cell early (the same as padding 1),
    upscore8 four pixels and upscore4 two."""
    summary = {
        arch: [(a.kernel, a.score_crop, a.target_crop) for a in tiny(arch, "fast").alignments]
        for arch in VGG
    }
    assert summary["fcn32s"] == [(64, 16, 0)]
    assert summary["fcn16s"] == [(4, 1, 0), (32, 8, 0)]
    assert summary["fcn8s"] == summary["fcn8s_atonce"] == [(4, 1, 0), (4, 1, 0), (16, 4, 0)]
    assert summary["fcn4s"] == [(4, 1, 0), (4, 1, 0), (4, 1, 0), (8, 2, 0)]
    assert summary["fcn2s"] == [(4, 1, 0)] * 5
    reference = tiny("fcn8s", "reference")
    assert (reference.skip_offsets, reference.score_offsets, reference.final_offset) == (
        [5, 9],
        [0, 0],
        31,
    )


@pytest.mark.parametrize("arch", VGG)
def test_same_parameters_in_both_geometries(arch):
    reference, fast = tiny(arch, "reference"), tiny(arch, "fast")
    assert {k: v.shape for k, v in reference.state_dict().items()} == {
        k: v.shape for k, v in fast.state_dict().items()
    }
    fast.load_state_dict(reference.state_dict())  # reference (Caffe) weights load as they are
    assert reference.config.geometry == "reference" and fast.config.geometry == "fast"
    assert reference.backbone.conv1_1.padding == (100, 100) and reference.backbone.fc6.padding == (
        0,
        0,
    )
    assert fast.backbone.conv1_1.padding == (1, 1) and fast.backbone.fc6.padding == (3, 3)


def test_far_fewer_pixels():
    sizes = {}
    for geometry in ("reference", "fast"):
        model = tiny("fcn8s", geometry).eval()
        hook = model.backbone.conv1_2.register_forward_hook(
            lambda m, i, o, g=geometry: sizes.__setitem__(g, math.prod(o.shape[-2:]))
        )
        with torch.inference_mode():
            model(torch.randn(1, 3, 64, 96))
        hook.remove()
    assert sizes["fast"] == 64 * 96
    assert sizes["reference"] == 262 * 294  # 64 + 2 * 100 - 2 rows, 96 + 198 columns
    assert sizes["reference"] > 12 * sizes["fast"]


@pytest.mark.parametrize("geometry", ["reference", "fast"])
@pytest.mark.parametrize(
    ("arch", "path", "stride"),
    [
        ("fcn32s", "score_fr", 32),
        ("fcn8s", "score_pool4", 16),
        ("fcn8s", "score_pool3", 8),
        ("fcn4s", "score_pool3", 8),
        ("fcn4s", "score_pool2", 4),
        ("fcn2s", "score_pool1", 2),
    ],
)
def test_an_impulse_peaks_at_the_centre_of_its_cell(arch, path, stride, geometry):
    """The pooling grid starts at conv1_1's first output pixel, image pixel 1 - padding (-99
    or 0). A bright pixel falls in one cell of ``stride`` pixels; bilinear upsampling makes
    the output peak (a plateau for two 2x steps) symmetric about that cell's centre, which the
    crops must map back onto the image: a crop off by one pixel moves the peak by one."""
    model = impulse_net(arch, geometry, path)
    image = torch.zeros(1, 3, 70, 90)
    bright = (37, 50)
    image[(..., *bright)] = 1.0
    with torch.no_grad():
        out = model(image)[0, 0]
    assert_peak_at_cell_centre(out, bright, 1 - model.backbone.conv1_1.padding[0], stride)


def test_save_load_keeps_the_geometry(tmp_path):
    model = tiny("fcn16s", "fast").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.1)
    loaded = fcnseg.load(fcnseg.save(model, tmp_path / "fast.pt")).eval()
    assert loaded.config.geometry == "fast" and loaded.backbone.fc6.padding == (3, 3)
    x = torch.randn(1, 3, 19, 23)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_unknown_geometry():
    with pytest.raises(ValueError, match="geometry 'slow' is not one of"):
        fcnseg.fcn8s(geometry="slow")
