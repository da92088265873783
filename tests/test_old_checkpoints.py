"""Checkpoints written by fcnseg before issue 11 (typed configs, one metadata type) still load.

The files in tests/fixtures/ were written by tests/fixtures/make_checkpoints.py at main 7c7aa4a;
every tensor in them is random, and ``expected_outputs.ckpt`` holds each net's output on a
fixed input as that code computed it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import fcnseg
from fcnseg.metadata import Metadata

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = sorted(path.stem for path in FIXTURES.glob("*_v1.ckpt"))


def test_every_fixture_is_found():
    assert NAMES == [
        "fcn16s_bn_fast_v1",
        "fcn8s_resnet18_v1",
        "fcn8s_two_headed_v1",
        "fcn8s_v1",
        "fcn_latefusion_v1",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_loads_with_same_weights_and_outputs(name):
    path = FIXTURES / f"{name}.ckpt"
    stored = torch.load(path, weights_only=True)["state_dict"]
    model = fcnseg.load(path).eval()
    state = model.state_dict()
    assert sorted(state) == sorted(stored)
    for key, value in stored.items():
        assert torch.equal(state[key], value), key
    expected = torch.load(FIXTURES / "expected_outputs.ckpt", weights_only=True)[name]
    with torch.no_grad():
        out = model(expected["input"])
    if isinstance(out, dict):
        assert out.keys() == expected["output"].keys()
        for key in out:
            torch.testing.assert_close(out[key], expected["output"][key], rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(out, expected["output"], rtol=0, atol=1e-6)


def test_old_checkpoint_metadata_reads_back_into_the_type():
    path = FIXTURES / "fcn8s_v1.ckpt"
    model = fcnseg.load(path)
    assert fcnseg.metadata_of(model) == Metadata(
        classes=("sky", "road", "car"),
        palette=((0, 0, 255), (128, 64, 128), (255, 0, 0)),
        preprocessing={"type": "Normalize", "mean": [0.5] * 3, "std": [0.25] * 3, "scale": 1 / 255},
        input_scale=0.5,
        ignore_index=255,
        dataset="folder",
    )
    # written back, the metadata is the dict the old code wrote
    assert fcnseg.metadata_of(model).to_dict() == torch.load(path, weights_only=True)["meta"]


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_config_and_metadata_round_trip(tmp_path, name):
    stored = torch.load(FIXTURES / f"{name}.ckpt", weights_only=True)
    model = fcnseg.load(FIXTURES / f"{name}.ckpt")
    assert model.arch == stored["arch"]
    # settings added since (e.g. instance_norm_stages) take their defaults
    settings = {**dataclasses.asdict(model.config.__class__()), **stored["settings"]}
    assert fcnseg.models.settings_of(model) == settings
    again = torch.load(fcnseg.save(model, tmp_path / "again.pt"), weights_only=True)
    assert again["meta"] == stored["meta"]
    assert again["settings"] == settings
    assert again["arch"] == stored["arch"]


def test_old_checkpoint_keys_beyond_the_fields_are_kept():
    meta = fcnseg.metadata_of(fcnseg.load(FIXTURES / "fcn8s_two_headed_v1.ckpt"))
    assert meta.dataset == "siftflow" and meta.classes[0] == "awning" and meta.palette is None
    assert meta.preprocessing["type"] == "CaffeMeanSubtract"
    assert meta.extra == {
        "caffe": {"source": "siftflow-fcn8s.caffemodel", "net": "", "layout": "layer"}
    }
    fusion = fcnseg.metadata_of(fcnseg.load(FIXTURES / "fcn_latefusion_v1.ckpt"))
    assert fusion.extra == {"modality": "rgbd"} and fusion.input_scale == 1.0
