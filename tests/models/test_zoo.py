"""``fcnseg models``: the table of nets, its numbers against Table 1 and hand counts."""

import pytest
import torch

import fcnseg
from fcnseg.cli import main
from fcnseg.models import MODELS, zoo
from fcnseg.models.backbones.googlenet import Inception
from fcnseg.models.backbones.resnet import Bottleneck


@pytest.mark.parametrize(
    ("arch", "rf", "output_stride"),
    [
        ("fcn32s", 404, 32),  # Table 1: VGG16's fc7 sees 404 pixels
        ("fcn8s", 404, 8),
        ("fcn_alexnet", 355, 32),  # Table 1: 355
        ("fcn_googlenet", 715, 32),  # Table 1's 907 counts the discarded 7x7 pool: + 6 * 32
        ("fcn8s_resnet50", 427, 8),
    ],
)
def test_describe(arch, rf, output_stride):
    info = zoo.describe(arch, size=32)
    with torch.device("meta"):
        model = MODELS[arch](num_classes=zoo.NUM_CLASSES)
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert (info.receptive_field, info.stride, info.output_stride) == (rf, 32, output_stride)
    assert info.gflops > 0 and info.size == 32


def test_fast_geometry_costs_less():
    reference, fast = zoo.describe("fcn8s", 64), zoo.describe("fcn8s", 64, geometry="fast")
    assert fast.parameters == reference.parameters and fast.name == "fcn8s (fast)"
    assert fast.gflops < reference.gflops / 5  # 64 px wide instead of 262 at conv1


def test_flops_by_hand():
    """fcn32s fast on 32 x 32: each layer's multiply-adds, cells x out x in x kernel area."""
    macs = (
        32 * 32 * 64 * (3 + 64) * 9  # conv1_1, conv1_2
        + 16 * 16 * 128 * (64 + 128) * 9  # conv2
        + 8 * 8 * 256 * (128 + 256 + 256) * 9  # conv3
        + 4 * 4 * 512 * (256 + 512 + 512) * 9  # conv4
        + 2 * 2 * 512 * (512 * 3) * 9  # conv5
        + 4096 * 512 * 49  # fc6 on the single pool5 cell
        + 4096 * 4096  # fc7
        + 21 * 4096  # score_fr
        + 21 * 21 * 64 * 64  # upscore, counted per input cell
    )
    assert zoo.describe("fcn32s", 32, geometry="fast").gflops * 1e9 == 2 * macs


def test_receptive_field_of_branchy_modules():
    assert zoo.receptive_field([Inception(4, (1, 1, 1, 1, 1, 1))]) == (5, 1)
    assert zoo.receptive_field([Bottleneck(4, 1, stride=2)]) == (3, 2)


def test_table_and_cli(capsys):
    rows = zoo.table(size=16, archs=["fcn32s", "fcn8s_mobilenet_v3_large"])
    text = zoo.format_table(rows)
    assert "GFLOPs@16" in text and "fcn8s_mobilenet_v3_large" in text
    assert main(["models", "--size", "16", "--arch", "fcn_alexnet"]) == 0
    out = capsys.readouterr().out
    assert "fcn_alexnet" in out and "355" in out and "58.7M" in out
    assert main(["models", "--arch", "fcn99s"]) == 2
    assert "fcn99s" in capsys.readouterr().err


def test_default_rows_cover_every_builder():
    rows = zoo.default_rows()
    assert {arch for arch, _ in rows} == set(MODELS)
    # fcnseg models lists the registry's names, in its order
    assert list(dict.fromkeys(arch for arch, _ in rows)) == fcnseg.models.list_models()
    assert ("fcn8s", (("geometry", "fast"),)) in rows
