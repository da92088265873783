"""Issue 12, cases 3 and 12: a hostile caffemodel is refused before protobuf builds anything,
and an ONNX export leaves one self-contained file (no stray NAME.onnx.data), or nothing."""

from __future__ import annotations

import os
import stat

import pytest
import torch

pytest.importorskip("google.protobuf")

from google.protobuf.internal.encoder import _VarintBytes  # noqa: E402

from fcnseg.cli import main  # noqa: E402
from fcnseg.interop import caffe_pb  # noqa: E402
from fcnseg.interop.caffe import (  # noqa: E402
    MAX_LAYERS,
    MAX_WIRE_FIELDS,
    CaffeModelError,
    parse_caffemodel,
)
from fcnseg.interop.export import ExportError, export_onnx  # noqa: E402
from fcnseg.models import create_model  # noqa: E402


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


LAYER, BLOBS, SHAPE, DIM, BOTTOM = 100, 7, 7, 1, 3  # field numbers (caffe_pb._SCHEMA)

BOMBS = {
    # the issue's file: 5 million empty layers in 15 MB
    "empty layers": (b"\xa2\x06\x00" * 5_000_000, f"holds more than {MAX_LAYERS:,} layers"),
    "empty blobs in one layer": (
        _field(LAYER, _field(BLOBS, b"") * 2_000_000),
        f"more than {MAX_WIRE_FIELDS:,} protobuf fields",
    ),
    "20M axes in one shape": (
        _field(LAYER, _field(BLOBS, _field(SHAPE, _field(DIM, b"\x01" * 20_000_000)))),
        "a blob shape has more than 32 axes",
    ),
    "empty bottoms": (
        _field(LAYER, _field(BOTTOM, b"") * 2_000_000),
        f"more than {MAX_WIRE_FIELDS:,} protobuf fields",
    ),
    "unknown varints": (b"\x08\x00" * 2_000_000, f"more than {MAX_WIRE_FIELDS:,} protobuf"),
    "a group": (b"\x0b\x0c" + b"\xa2\x06\x00" * 10, "holds protobuf groups"),
}


@pytest.mark.parametrize("case", BOMBS)
def test_3_hostile_caffemodels_are_refused_before_protobuf_builds_them(case, monkeypatch):
    data, message = BOMBS[case]

    class Unbuilt:
        @staticmethod
        def FromString(data):  # noqa: N802 - protobuf's name
            raise AssertionError("protobuf was asked to build the messages")

    monkeypatch.setattr(caffe_pb, "NetParameter", Unbuilt)
    with pytest.raises(CaffeModelError, match=f"^bomb.caffemodel.*{message}"):
        parse_caffemodel(data, source="bomb.caffemodel")


def test_3_the_issue_file_is_refused_by_the_cli_in_one_line(tmp_path, capsys):
    model = tmp_path / "m.caffemodel"
    model.write_bytes(b"\xa2\x06\x00" * 5_000_000)
    assert main(["import-caffe", "--out", str(tmp_path / "o.pt"), str(model)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"fcnseg import-caffe: error: {model} holds more than {MAX_LAYERS:,} layers; the nets "
        "fcnseg imports have fewer than 100 (a damaged or hostile file?)\n"
    )
    assert not (tmp_path / "o.pt").exists()


def test_3_a_shape_with_too_many_unpacked_axes_is_refused():
    dims = b"\x08\x01" * 40  # 40 unpacked axes: under the field cap, over Caffe's 32
    data = _field(LAYER, _field(1, b"conv") + _field(BLOBS, _field(SHAPE, dims)))
    with pytest.raises(CaffeModelError, match="a blob shape has 40 axes"):
        parse_caffemodel(data, source="axes.caffemodel")


# --------------------------------------------------------------------------- 12 ONNX files


@pytest.fixture(scope="module")
def model():
    return create_model("fcn8s", num_classes=3, width=1 / 16).eval()


def test_12_onnx_export_writes_one_file_and_no_stray_data(model, tmp_path):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    old = os.umask(0o022)
    try:
        path = export_onnx(model, tmp_path / "net.onnx", verify=False)
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]  # no .data, no scratch
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    proto = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert path.stat().st_size > weights  # the weights are inside


def test_12_a_failed_onnx_export_leaves_nothing(model, tmp_path, monkeypatch):
    pytest.importorskip("onnx")

    def half_written(module, args, f, **kwargs):
        open(f, "wb").write(b"partial graph")
        open(f"{f}.data", "wb").write(b"\0" * 1024)
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(ExportError, match="ONNX export of FCN failed: exporter crashed"):
        export_onnx(model, tmp_path / "net.onnx", verify=False)
    assert list(tmp_path.iterdir()) == []
