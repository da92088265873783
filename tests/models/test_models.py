"""The VGG16 FCN family against the reference nets of fcn.berkeleyvision.org."""

import pytest
import torch

import fcnseg
from fcnseg.models import MODELS, VGG16

VGG16_ARCHS = ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"]

# Parameter shapes of the reference voc-fcn nets, with K classes (Caffe blob shapes).
VGG16_PARAMS = {
    "conv1_1": (64, 3, 3, 3),
    "conv1_2": (64, 64, 3, 3),
    "conv2_1": (128, 64, 3, 3),
    "conv2_2": (128, 128, 3, 3),
    "conv3_1": (256, 128, 3, 3),
    "conv3_2": (256, 256, 3, 3),
    "conv3_3": (256, 256, 3, 3),
    "conv4_1": (512, 256, 3, 3),
    "conv4_2": (512, 512, 3, 3),
    "conv4_3": (512, 512, 3, 3),
    "conv5_1": (512, 512, 3, 3),
    "conv5_2": (512, 512, 3, 3),
    "conv5_3": (512, 512, 3, 3),
    "fc6": (4096, 512, 7, 7),
    "fc7": (4096, 4096, 1, 1),
}


def reference_params(arch, k):
    """(layer name -> weight shape, layers with a bias) of voc-<arch>."""
    weights = dict(VGG16_PARAMS, score_fr=(k, 4096, 1, 1))
    if arch == "fcn32s":
        weights["upscore"] = (k, k, 64, 64)
    elif arch == "fcn16s":
        weights.update(upscore2=(k, k, 4, 4), score_pool4=(k, 512, 1, 1))
        weights["upscore16"] = (k, k, 32, 32)
    else:
        weights.update(
            upscore2=(k, k, 4, 4),
            score_pool4=(k, 512, 1, 1),
            upscore_pool4=(k, k, 4, 4),
            score_pool3=(k, 256, 1, 1),
            upscore8=(k, k, 16, 16),
        )
    biased = {name for name in weights if not name.startswith("upscore")}
    return weights, biased


@pytest.mark.parametrize("arch", VGG16_ARCHS)
@pytest.mark.parametrize("num_classes", [21, 33, 40, 60])
def test_parameter_names_and_shapes_match_reference(arch, num_classes):
    with torch.device("meta"):
        model = MODELS[arch](num_classes=num_classes)
    params = dict(model.named_parameters())
    weights, biased = reference_params(arch, num_classes)
    expected = {f"{name}.weight": shape for name, shape in weights.items()}
    expected.update({f"{name}.bias": (weights[name][0],) for name in biased})
    assert len(params) == len(expected)
    for ref_name, shape in expected.items():
        matches = [n for n in params if n == ref_name or n.endswith("." + ref_name)]
        assert len(matches) == 1, (ref_name, matches)
        assert tuple(params[matches[0]].shape) == shape, ref_name


def test_reference_crop_offsets_are_derived():
    offsets = {arch: (m.skip_offsets, m.final_offset) for arch, m in _tiny_models().items()}
    assert offsets["fcn32s"] == ([], 19)
    assert offsets["fcn16s"] == ([5], 27)
    assert offsets["fcn8s"] == ([5, 9], 31)
    assert offsets["fcn8s_atonce"] == ([5, 9], 31)


def _tiny_models(**kwargs):
    return {arch: MODELS[arch](num_classes=3, width=1 / 16, **kwargs) for arch in VGG16_ARCHS}


@pytest.mark.parametrize("arch", VGG16_ARCHS)
@pytest.mark.parametrize(
    "size", [(1, 1), (1, 7), (17, 1), (31, 33), (32, 32), (63, 65), (360, 480), (500, 500)]
)
def test_output_size_equals_input_size(arch, size):
    model = MODELS[arch](num_classes=5, width=1 / 16).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, *size)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["fcn32s", "fcn8s"])
def test_output_size_large_image(arch):
    model = MODELS[arch](num_classes=4, width=1 / 16).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 1000, 750))
    assert out.shape == (1, 4, 1000, 750)


def test_at_once_scales_skips_before_scoring():
    model = fcnseg.fcn8s_atonce(num_classes=3, width=1 / 16)
    assert float(model.scale_pool4) == pytest.approx(0.01)
    assert float(model.scale_pool3) == pytest.approx(0.0001)
    assert not any(n.startswith("scale_") for n, _ in model.named_parameters())
    assert "scale_pool4" in model.state_dict()


def test_at_once_differs_from_staged_only_by_the_scales():
    torch.manual_seed(1)
    staged = fcnseg.fcn8s(num_classes=3, width=1 / 16).eval()
    for layer in (staged.score_pool4, staged.score_pool3, staged.score_fr):
        torch.nn.init.normal_(layer.weight)
    atonce = fcnseg.fcn8s_atonce(num_classes=3, width=1 / 16).eval()
    atonce.load_state_dict(staged.state_dict(), strict=False)
    x = torch.randn(1, 3, 40, 44)
    with torch.no_grad():
        atonce.score_pool4.weight.mul_(100)
        atonce.score_pool3.weight.mul_(10000)
        torch.testing.assert_close(atonce(x), staged(x), rtol=1e-4, atol=1e-4)


def test_score_layers_start_at_zero_and_upsampling_is_frozen():
    model = fcnseg.fcn8s(num_classes=4, width=1 / 16)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert torch.count_nonzero(getattr(model, name).weight) == 0
    ups = model.upsampling_layers()
    assert [u.stride[0] for u in ups] == [2, 2, 8]
    assert all(not u.weight.requires_grad for u in ups)
    learnable = fcnseg.fcn8s(num_classes=4, width=1 / 16, learnable_upsampling=True)
    assert all(u.weight.requires_grad for u in learnable.upsampling_layers())


def test_width_scales_every_hidden_layer():
    model = fcnseg.fcn8s(num_classes=21, width=0.25)
    assert model.backbone.conv1_1.out_channels == 16
    assert model.backbone.conv5_3.out_channels == 128
    assert model.backbone.fc7.out_channels == 1024
    full = sum(p.numel() for n, p in fcnseg.fcn8s().backbone.named_parameters() if "weight" in n)
    quarter = sum(p.numel() for n, p in model.backbone.named_parameters() if "weight" in n)
    assert quarter / full == pytest.approx(1 / 16, rel=0.01)


def test_batch_norm_follows_each_convolution_and_trains():
    model = fcnseg.fcn8s(num_classes=3, width=1 / 16, batch_norm=True)
    names = [n for n, _ in model.backbone.named_children()]
    convs = [n for n in names if n.startswith(("conv", "fc")) and not n.endswith("_bn")]
    assert len(convs) == 15
    for conv in convs:
        assert names[names.index(conv) + 1] == f"{conv}_bn"
        assert getattr(model.backbone, conv).bias is None
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(2, 3, 24, 24)
    y = (x[:, 0] > 0).long()
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_in_channels():
    model = fcnseg.fcn32s(num_classes=2, in_channels=4, width=1 / 16).eval()
    assert model.backbone.conv1_1.weight.shape[1] == 4
    assert model(torch.randn(1, 4, 9, 10)).shape == (1, 2, 9, 10)


def test_backbone_taps():
    backbone = VGG16(width=1 / 16)
    feats = backbone(torch.randn(1, 3, 64, 64))
    assert set(feats) == {"pool1", "pool2", "pool3", "pool4", "fc7"}
    assert [(t.name, t.stride) for t in backbone.taps] == [
        ("pool1", 2),
        ("pool2", 4),
        ("pool3", 8),
        ("pool4", 16),
        ("fc7", 32),
    ]
    # conv1_1 padded by 100: 262 rows, halved (rounding up) per pool; fc6 7x7 unpadded
    for name, size in (("pool1", 131), ("pool2", 66), ("pool3", 33), ("pool4", 17), ("fc7", 3)):
        assert feats[name].shape[1:] == (backbone.tap(name).channels, size, size), name


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        fcnseg.fcn8s(num_classes=0)
    with pytest.raises(ValueError, match="width"):
        fcnseg.fcn8s(width=0)
