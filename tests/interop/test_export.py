"""ONNX and TorchScript export: files that match the model at sizes other than the example's."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fcnseg import checkpoint
from fcnseg.interop.export import (
    INPUT_NAME,
    META_KEY,
    OUTPUT_NAME,
    ExportError,
    export_onnx,
    export_torchscript,
    load_torchscript,
)
from fcnseg.metadata import Metadata
from fcnseg.models import MODELS

# (batch, height, width): odd and even sides, a tiny image, batch 1 and 2; none is the
# example input's (2, 64, 64).
SIZES = ((1, 37, 53), (2, 70, 45), (1, 1, 2))


@pytest.fixture(scope="module")
def model():
    """FCN-8s at-once at width 1/16, random convolutions scaled to keep scores near 1."""
    net = MODELS["fcn8s_atonce"](num_classes=5, width=1 / 16).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if type(module) is nn.Conv2d:  # the upsampling stays bilinear
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2 / fan_in) ** 0.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
    net.metadata = Metadata(classes=("a", "b", "c", "d", "e"), ignore_index=255)
    return net


def run_onnx(path, x):
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (scores,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    return torch.from_numpy(scores)


def assert_matches(run, model, sizes=SIZES):
    for batch, height, width in sizes:
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            expected = model(x)
        got = run(x)
        assert got.shape == (batch, 5, height, width)
        assert expected.abs().max() > 0.1  # scores that would show a misplaced crop
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_onnx_dynamo_exporter(tmp_path, model):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    path = export_onnx(model, tmp_path / "fcn.onnx")  # checks itself in onnxruntime, too
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out_dims] == ["batch", 5, "height", "width"]
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[META_KEY])
    assert meta["arch"] == "fcn8s_atonce" and meta["classes"][0] == "a"
    assert_matches(lambda x: run_onnx(path, x), model)


def test_onnx_legacy_exporter_with_opset(tmp_path, model):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = export_onnx(model, tmp_path / "legacy.onnx", opset=17, dynamo=False)
    assert onnx.load(str(path)).opset_import[0].version == 17
    assert_matches(lambda x: run_onnx(path, x), model)


def test_torchscript(tmp_path, model):
    path = export_torchscript(model, tmp_path / "fcn.ts")
    module, meta = load_torchscript(path)
    assert meta["settings"]["width"] == 1 / 16 and meta["ignore_index"] == 255
    assert_matches(lambda x: module(x), model)
    assert model.training is False and next(model.parameters()).requires_grad  # untouched


class FrozenBranch(nn.Module):
    """A Python comparison on a size: tracing freezes it at the example's value."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        return y * 2 if x.shape[-1] > 50 else y


def test_exports_that_freeze_a_size_are_refused(tmp_path):
    with pytest.raises(ExportError, match="differs from the model .* froze a size"):
        export_torchscript(FrozenBranch(), tmp_path / "frozen.ts")
    pytest.importorskip("onnxruntime")
    with pytest.raises(ExportError, match="ONNX file .* differs from the model"):
        export_onnx(FrozenBranch(), tmp_path / "frozen.onnx", dynamo=False)


def test_cli_export(tmp_path, model, capsys):
    from fcnseg.cli import main

    pytest.importorskip("onnxruntime")
    path = checkpoint.save(model, tmp_path / "model.pt")
    onnx_path, ts_path = tmp_path / "out" / "m.onnx", tmp_path / "out" / "m.ts"
    argv = ["export", "--checkpoint", str(path), "--onnx", str(onnx_path), "--onnx-exporter"]
    assert main(argv + ["legacy", "--torchscript", str(ts_path)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {onnx_path} (ONNX, legacy exporter" in printed
    assert "onnxruntime matches the model" in printed and f"wrote {ts_path}" in printed
    assert_matches(lambda x: run_onnx(onnx_path, x), model, SIZES[:1])

    assert main(["export", "--checkpoint", str(path)]) == 2
    assert "give --onnx PATH and/or --torchscript PATH" in capsys.readouterr().err
