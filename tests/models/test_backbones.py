"""The other nets of Table 1 and the modern backbones: names, shapes, geometry, training."""

from fractions import Fraction

import pytest
import torch
from torch import nn

import fcnseg
from fcnseg.models import FCN, MODELS, align_upsampling
from fcnseg.models.backbones.googlenet import Inception, caffe_layer_name
from fcnseg.models.backbones.mobilenet import MobileNetV3Large, from_torchvision_mobilenet_v3
from fcnseg.models.backbones.resnet import BasicBlock, ResNet, from_torchvision_resnet
from fcnseg.models.geometry import IDENTITY, CoordMap, layer_coord_map

NEW = [
    "fcn_alexnet",
    "fcn_googlenet",
    "fcn8s_resnet18",
    "fcn8s_resnet34",
    "fcn8s_resnet50",
    "fcn8s_resnet101",
    "fcn8s_mobilenet_v3_large",
]
# Every single-output FCN, and the VGG16 nets in the fast geometry too (the fused and
# two-headed nets are checked against these in test_fusion.py and test_multitask.py).
MULTI = ("fcn_latefusion", "fcn16s_two_headed", "fcn8s_two_headed")
ALL = [(arch, {}) for arch in MODELS if arch not in MULTI] + [
    (arch, {"geometry": "fast"}) for arch in ("fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce")
]


def tiny(arch, **kwargs):
    return MODELS[arch](num_classes=3, width=1 / 16, **kwargs)


@pytest.mark.parametrize("arch", NEW)
def test_output_size_equals_input_size(arch):
    model = tiny(arch).eval()
    with torch.inference_mode():
        for size in [(1, 1), (1, 7), (5, 3), (31, 33)]:
            assert model(torch.randn(1, 3, *size)).shape == (1, 3, *size), size


@pytest.mark.parametrize(("arch", "settings"), ALL, ids=lambda v: str(v or ""))
def test_crops_compose_to_the_identity(arch, settings):
    """Re-derive every blob's map from the layers themselves: each skip lands exactly on the
    upsampled scores, and the final scores exactly on the image, ``CoordMap(1, 0)``."""
    model = tiny(arch, **settings)
    backbone = model.backbone
    ups = model.upsampling_layers()

    def crop(c):
        return CoordMap(Fraction(1), Fraction(-c))

    score = backbone.coord_map(model.head).then(layer_coord_map(model.score_fr))
    for tap, up, align in zip(model.skips, ups, model.alignments):
        assert up.kernel_size[0] == align.kernel and up.padding == (0, 0)
        score = score.then(layer_coord_map(up)).then(crop(align.score_crop))
        skip = backbone.coord_map(tap).then(layer_coord_map(getattr(model, f"score_{tap}")))
        assert score == skip.then(crop(align.target_crop))
        assert min(align.score_crop, align.target_crop) == 0
    out = score.then(layer_coord_map(ups[-1])).then(crop(model.final_offset))
    assert out == IDENTITY
    assert all(isinstance(o, int) and o >= 0 for o in model.skip_offsets + [model.final_offset])


def test_derived_kernels_and_crops():
    def summary(model):
        return [(a.kernel, a.score_crop, a.target_crop) for a in model.alignments]

    # AlexNet: fc7 at x/32 - 13/32, so the odd kernel: the reference's 63, crop 18.
    assert summary(tiny("fcn_alexnet")) == [(63, 18, 0)]
    # ResNet and MobileNet taps sit at x/stride: odd kernels, one cell cropped at each fusion.
    assert summary(tiny("fcn8s_resnet18")) == [(3, 1, 0), (3, 1, 0), (15, 7, 0)]
    assert summary(tiny("fcn8s_mobilenet_v3_large")) == [(3, 1, 0), (3, 1, 0), (15, 7, 0)]
    # VGG16 reference: even kernels, skips cropped by 5 and 9, the image by 31.
    assert summary(tiny("fcn8s")) == [(4, 0, 5), (4, 0, 9), (16, 31, 0)]


def test_align_upsampling_errors():
    scores = CoordMap(Fraction(1, 32), Fraction(1, 8))
    with pytest.raises(ValueError, match="no bilinear kernel"):
        align_upsampling(scores, CoordMap(Fraction(1, 16), 0), 2, "skip x")
    with pytest.raises(ValueError, match="stride"):
        align_upsampling(scores, CoordMap(Fraction(1, 8), 0), 2, "skip x")
    with pytest.raises(ValueError, match="inside the image"):
        align_upsampling(CoordMap(Fraction(1, 32), Fraction(-2)), IDENTITY, 32, "final")


def test_alexnet_matches_caffe_shapes():
    with torch.device("meta"):
        model = fcnseg.models.fcn_alexnet()
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")}
    assert shapes == {
        "backbone.conv1.weight": (96, 3, 11, 11),
        "backbone.conv2.weight": (256, 48, 5, 5),
        "backbone.conv3.weight": (384, 256, 3, 3),
        "backbone.conv4.weight": (384, 192, 3, 3),
        "backbone.conv5.weight": (256, 192, 3, 3),
        "backbone.fc6.weight": (4096, 256, 6, 6),
        "backbone.fc7.weight": (4096, 4096, 1, 1),
        "score_fr.weight": (21, 4096, 1, 1),
        "upscore.weight": (21, 21, 63, 63),
    }
    names = [n for n, _ in model.backbone.named_children()]
    assert names[:4] == ["conv1", "relu1", "pool1", "norm1"]  # CaffeNet: pool before LRN


def test_googlenet_names_follow_caffe():
    with torch.device("meta"):
        model = fcnseg.models.fcn_googlenet()
    modules = dict(model.backbone.named_modules())
    for caffe in ["conv1/7x7_s2", "conv2/3x3_reduce", "inception_3a/5x5", "inception_5b/pool_proj"]:
        name = caffe.replace("/", ".") if caffe.startswith("inception") else caffe.replace("/", "_")
        assert caffe_layer_name(name) == caffe
        assert isinstance(modules[name], nn.Conv2d)
    assert model.backbone.inception_5b.out_channels == 1024
    assert "pool5_7x7_s1" not in modules  # the average pool is discarded (section 4.1)
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    assert 5.9e6 < backbone_params < 6.1e6  # Table 1: 6M


# Parameter counts of torchvision's classifiers without their last layers.
TORCHVISION_COUNTS = {18: 11_176_512, 34: 21_284_672, 50: 23_508_032, 101: 42_500_160}


@pytest.mark.parametrize("depth", sorted(TORCHVISION_COUNTS))
def test_resnet_matches_torchvision_layout(depth):
    with torch.device("meta"):
        backbone = ResNet(depth)
    assert sum(p.numel() for p in backbone.parameters()) == TORCHVISION_COUNTS[depth]
    state = backbone.state_dict()
    assert "layer2.0.downsample.0.weight" in state and "layer1.0.bn1.running_mean" in state
    assert ("layer4.2.conv3.weight" in state) == (depth >= 50)
    assert [(t.name, t.stride) for t in backbone.taps] == [
        ("layer2", 8),
        ("layer3", 16),
        ("layer4", 32),
    ]
    foreign = {**state, "fc.weight": torch.empty(1000, 1), "fc.bias": torch.empty(1000)}
    assert set(from_torchvision_resnet(foreign)) == set(state)


def test_mobilenet_matches_torchvision_layout():
    with torch.device("meta"):
        backbone = MobileNetV3Large()
    # torchvision's mobilenet_v3_large: 5,483,032 parameters, 2,511,080 of them in the classifier
    assert sum(p.numel() for p in backbone.parameters()) == 2_971_952
    state = backbone.state_dict()
    assert tuple(state["4.block.2.fc1.weight"].shape) == (24, 72, 1, 1)  # squeeze-excitation
    foreign = {f"features.{k}": v for k, v in state.items()}
    foreign["classifier.0.weight"] = torch.empty(1280, 960)
    assert set(from_torchvision_mobilenet_v3(foreign)) == set(state)
    assert [(t.channels, t.stride) for t in backbone.taps] == [(40, 8), (112, 16), (960, 32)]


def test_branchy_modules_check_their_alignment():
    block = BasicBlock(4, 4)
    assert layer_coord_map(block) == IDENTITY
    block.conv2.padding = (0, 0)  # the main path now shrinks by one pixel a side
    with pytest.raises(ValueError, match="not aligned"):
        layer_coord_map(block)
    inception = Inception(4, (1, 1, 1, 1, 1, 1))
    assert layer_coord_map(inception) == IDENTITY
    assert inception.receptive_field() == (5, 1)  # the 5x5 branch
    inception._modules["5x5"].padding = (0, 0)
    with pytest.raises(ValueError, match="not aligned"):
        layer_coord_map(inception)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("arch", "settings"),
    [("fcn8s", {}), ("fcn8s", {"geometry": "fast"}), ("fcn8s_resnet18", {}), ("fcn_alexnet", {})],
    ids=lambda v: str(v or ""),
)
def test_a_trace_holds_for_every_size(arch, settings):
    """torch.jit.trace fixes which of two blobs ends first when fusing; it must not depend on
    the input size (ResNet: tied at 64 px, skip shorter at 37 px)."""
    model = tiny(arch, **settings).eval()
    traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64))
    for size in [(1, 1), (37, 51), (90, 100)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize("arch", NEW)
def test_trains_from_scratch(arch):
    settings = {"dropout": 0.0} if arch in ("fcn_alexnet", "fcn_googlenet") else {}
    model = tiny(arch, **settings)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(2, 3, 32, 32)
    y = (x[:, 0] > 0).long()
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("arch", NEW)
def test_save_load_round_trip(tmp_path, arch):
    model = tiny(arch)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.1)
    model.eval()
    loaded = fcnseg.load(fcnseg.save(model, tmp_path / "m.pt")).eval()
    assert isinstance(loaded, FCN) and loaded.arch == arch and loaded.config == model.config
    x = torch.randn(1, 3, 13, 11)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
