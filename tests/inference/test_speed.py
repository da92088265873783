"""Fast paths: each equal (or, for bfloat16, close) to the reference path on tiny inputs."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from speed_rows import label_maps  # benchmarks/ (pytest's pythonpath)
from torchfcn_port import from_torchfcn, label_accuracy_score, to_torchfcn

import fcnseg
from fcnseg.data.transforms import ImageNetNormalize
from fcnseg.evaluate.metrics import ConfusionMatrix, confusion_counts
from fcnseg.inference.fast import (
    PerClassUpsample,
    fast_modules,
    matmul_convolutions,
    optimize_for_inference,
    per_class_upsampling,
)
from fcnseg.inference.predict import predict_image
from fcnseg.models.matmul_conv import MatmulConv2d
from fcnseg.models.upsample import BilinearUpsample, bilinear_upsampling

ROOT = Path(__file__).resolve().parents[2]
NETS = ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"]


def _random_scores(model: torch.nn.Module) -> torch.nn.Module:
    """Nonzero score layers (they start at zero), so outputs depend on every layer."""
    for name, p in model.named_parameters():
        if name.startswith("score_"):
            torch.nn.init.normal_(p, std=0.1)
    return model


def _net(arch: str, geometry: str = "reference") -> torch.nn.Module:
    model = getattr(fcnseg.models, arch)(num_classes=5, width=1 / 16, geometry=geometry)
    return _random_scores(model).eval()


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_per_class_upsampling_equals_dense(factor):
    layer = bilinear_upsampling(6, factor)
    assert type(layer) is BilinearUpsample  # the builders make the plain module
    x = torch.randn(2, 6, 5, 7)
    dense = layer(x)
    assert per_class_upsampling(layer) == 1 and isinstance(layer, PerClassUpsample)
    assert layer._diagonal() is not None
    fast = layer(x)
    assert fast.shape == dense.shape
    torch.testing.assert_close(fast, dense, rtol=0, atol=1e-6)
    assert per_class_upsampling(layer, enable=False) == 1 and type(layer) is BilinearUpsample


def test_dense_path_for_learned_or_nondiagonal_weights():
    learned = bilinear_upsampling(3, 2, learnable=True)
    per_class_upsampling(learned)
    assert learned._diagonal() is None  # grad mode on: the off-diagonal grads are wanted
    with torch.no_grad():
        assert learned._diagonal() is not None  # inference: diagonal weights are exact
        learned.weight[0, 1] += 1.0  # learned cross-class terms: must stay dense
        assert learned._diagonal() is None  # checked on every call, nothing cached
    frozen = bilinear_upsampling(3, 2)
    per_class_upsampling(frozen)
    state = {"weight": torch.randn_like(frozen.weight)}
    frozen.load_state_dict(state)
    assert frozen._diagonal() is None
    x = torch.randn(1, 3, 4, 4)
    expected = torch.nn.functional.conv_transpose2d(x, state["weight"], stride=2)
    torch.testing.assert_close(frozen(x), expected)


def test_state_dict_keeps_dense_shapes():
    state = fcnseg.models.fcn8s(num_classes=5, width=1 / 16).state_dict()
    assert state["upscore8.weight"].shape == (5, 5, 16, 16)
    assert not any("diagonal" in key for key in state)


@pytest.mark.parametrize("arch", NETS)
@pytest.mark.parametrize("geometry", ["reference", "fast"])
def test_channels_last_and_grouped_match_reference(arch, geometry):
    model = _net(arch, geometry)
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        expected = model(x)  # the plain modules: dense upsampling, Conv2d
    runner = optimize_for_inference(model, channels_last=True)
    torch.testing.assert_close(runner(x), expected, rtol=1e-4, atol=1e-5)


def test_bfloat16_close():
    model = _net("fcn8s")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    got = optimize_for_inference(model, dtype=torch.bfloat16)(x)
    assert got.dtype == torch.float32
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 0.05 * scale


def test_compile_failure_falls_back(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = _net("fcn32s")
    x = torch.randn(1, 3, 24, 24)
    with caplog.at_level(logging.WARNING, logger="fcnseg.inference.fast"):
        runner = optimize_for_inference(model, compile=True)
    assert not runner.compiled and "torch.compile" in caplog.text
    with torch.no_grad():
        torch.testing.assert_close(runner(x), model(x))


def test_compile_error_on_first_call_falls_back(monkeypatch, caplog):
    def failing_forward(x):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(torch, "compile", lambda model: failing_forward)
    model = _net("fcn32s")
    runner = optimize_for_inference(model, channels_last=False, compile=True)
    assert runner.compiled
    x = torch.randn(1, 3, 24, 24)
    with caplog.at_level(logging.WARNING, logger="fcnseg.inference.fast"):
        y = runner(x)
    assert not runner.compiled and "backend exploded" in caplog.text
    with torch.no_grad():
        torch.testing.assert_close(y, model(x))


def test_float16_on_cpu_names_the_alternatives():
    with pytest.raises(ValueError, match="bfloat16"):
        optimize_for_inference(_net("fcn32s"), dtype=torch.float16)


def _plain_fcn8s():
    path = ROOT / "benchmarks" / "baselines" / "plain_fcn8s.py"
    spec = importlib.util.spec_from_file_location("plain_fcn8s", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PlainFCN8s


def test_plain_fcn8s_equals_ours_on_the_same_weights():
    ours = _random_scores(fcnseg.models.fcn8s(num_classes=4)).eval()
    plain = _plain_fcn8s()(num_classes=4).eval()
    plain.load_state_dict(to_torchfcn(ours.state_dict()))
    assert from_torchfcn(plain.state_dict()).keys() == ours.state_dict().keys()
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), ours(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_confusion_counts_equal_the_references(dtype):
    pred, target = label_maps((50, 60), num_classes=7)
    pred, target = pred.to(dtype), target.to(dtype)
    counts = confusion_counts(pred, target, 7)
    matrix = ConfusionMatrix(7)
    matrix.update(pred, target)
    assert torch.equal(counts, matrix.matrix)
    # torchfcn's scores from the same counts (its mask drops 255 as out of range)
    t, p = target.numpy().astype(np.int64), pred.numpy().astype(np.int64)
    acc, acc_cls, mean_iu, fwavacc = label_accuracy_score([t], [p], 7)
    metrics = matrix.compute()
    assert metrics["pixel_acc"] == pytest.approx(acc)
    assert metrics["mean_acc"] == pytest.approx(acc_cls)
    assert metrics["mean_iu"] == pytest.approx(mean_iu)
    assert metrics["fw_iu"] == pytest.approx(fwavacc)


def test_confusion_counts_reject_bad_values():
    pred = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"target values \[9\]"):
        confusion_counts(pred, torch.tensor([0, 9, 255]), 3)
    with pytest.raises(ValueError, match=r"predicted values \[3\]"):
        confusion_counts(torch.tensor([0, 3, 1]), torch.tensor([0, 1, 255]), 3)
    assert confusion_counts(pred, torch.tensor([0, 1, 255]), 3).sum() == 2


@pytest.mark.parametrize("arch", ["fcn8s", "fcn_alexnet"])
def test_matmul_convolutions_swaps_fc6_and_fc7_and_keeps_outputs(arch, monkeypatch):
    torch.manual_seed(0)
    model = _random_scores(fcnseg.models.MODELS[arch](num_classes=3, width=1 / 4)).eval()
    # at full width fc6 and fc7 pass the threshold; at this width, the threshold is fc7's size
    monkeypatch.setattr(
        "fcnseg.models.matmul_conv.MATMUL_MIN_WEIGHTS", model.backbone.fc7.weight.numel()
    )
    keys = list(model.state_dict())
    x = torch.randn(1, 3, 67, 75)
    with torch.no_grad():
        expected = model(x)
    assert matmul_convolutions(model) == 2
    swapped = [n for n, m in model.named_modules() if isinstance(m, MatmulConv2d)]
    assert swapped == ["backbone.fc6", "backbone.fc7"] and list(model.state_dict()) == keys
    runner = optimize_for_inference(model)  # swaps by default; they are already swapped
    torch.testing.assert_close(runner(x), expected, rtol=1e-4, atol=1e-4)
    assert matmul_convolutions(model, enable=False) == 2
    assert not any(isinstance(m, MatmulConv2d) for m in model.modules())


def test_fast_modules_swaps_in_place_and_keeps_labels(monkeypatch):
    model = _random_scores(fcnseg.fcn8s(num_classes=3, width=1 / 8)).eval()
    monkeypatch.setattr(
        "fcnseg.models.matmul_conv.MATMUL_MIN_WEIGHTS", model.backbone.fc6.weight.numel()
    )
    image = torch.rand(3, 41, 53) * 255
    keys = list(model.state_dict())
    plain = predict_image(model, image, ImageNetNormalize())
    # the default path runs the plain modules the builder made
    assert type(model.backbone.fc6) is torch.nn.Conv2d
    assert type(model.upscore8) is BilinearUpsample
    assert fast_modules(model) is model
    assert type(model.backbone.fc6) is MatmulConv2d and type(model.upscore8) is PerClassUpsample
    assert list(model.state_dict()) == keys
    assert torch.equal(predict_image(model, image, ImageNetNormalize()), plain)
