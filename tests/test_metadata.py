"""Metadata: one frozen type, stored in checkpoints as plain values, read back into the type."""

from __future__ import annotations

import pytest
import torch

import fcnseg
from fcnseg.metadata import Metadata, MetadataError, metadata_of


def test_dict_round_trip_keeps_fields_and_extra_keys():
    values = {
        "classes": ["sky", "road"],
        "palette": [[0, 0, 255], [128, 64, 128]],
        "preprocessing": {"type": "CaffeMeanSubtract", "mean_bgr": [1.0, 2.0, 3.0]},
        "input_scale": 0.5,
        "ignore_index": 255,
        "dataset": "camvid",
        "modality": "rgbd",
    }
    meta = Metadata.from_dict(values)
    assert meta.classes == ("sky", "road") and meta.palette == ((0, 0, 255), (128, 64, 128))
    assert meta.input_scale == 0.5 and meta.extra == {"modality": "rgbd"}
    assert meta.to_dict() == values
    assert Metadata().to_dict() == {} and Metadata.from_dict({}) == Metadata()
    assert meta.updated(dataset="voc", caffe={"net": "x"}).to_dict() == {
        **values,
        "dataset": "voc",
        "caffe": {"net": "x"},
    }


def test_bad_metadata_is_refused_with_the_value():
    with pytest.raises(MetadataError, match=r"palette entries must be \[r, g, b\] in 0..255"):
        Metadata(palette=[[0, 0, 256]])
    with pytest.raises(MetadataError, match="normaliser spec"):
        Metadata(preprocessing="caffe")  # type: ignore[arg-type]
    with pytest.raises(MetadataError, match="input_scale must be > 0"):
        Metadata(input_scale=0)


def test_saved_metadata_is_plain_and_loads_weights_only(tmp_path):
    model = fcnseg.fcn32s(2, width=1 / 16)
    assert metadata_of(model) == Metadata()  # a new net records nothing
    model.metadata = Metadata(classes=("a", "b"), palette=((1, 2, 3), (4, 5, 6)))
    path = fcnseg.save(model, tmp_path / "m.pt", dataset="folder")
    stored = torch.load(path, weights_only=True)["meta"]
    assert stored == {"classes": ["a", "b"], "palette": [[1, 2, 3], [4, 5, 6]], "dataset": "folder"}
    assert metadata_of(fcnseg.load(path)) == Metadata(
        classes=("a", "b"), palette=((1, 2, 3), (4, 5, 6)), dataset="folder"
    )
    with pytest.raises(fcnseg.checkpoint.CheckpointError, match="m2.pt.*palette entries"):
        fcnseg.save(model, tmp_path / "m2.pt", palette=[[1, 2]])
