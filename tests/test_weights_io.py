"""The one reader of weight files: errors name the file; an init reads its file once."""

from __future__ import annotations

import pytest
import torch

import fcnseg
from fcnseg import weights_io
from fcnseg.train.build import initialize
from fcnseg.weights_io import WeightsFileError, read_weights
from helpers import TorchvisionStyleVGG16, randomize


def test_errors_name_the_file_and_what_it_was_for(tmp_path):
    with pytest.raises(WeightsFileError, match=r"init weights .*nope.pt does not exist"):
        read_weights(tmp_path / "nope.pt", what="init weights")
    (tmp_path / "notes.pt").write_text("not a zip")
    with pytest.raises(WeightsFileError, match=r"notes.pt is not a torch checkpoint \(not a zip"):
        read_weights(tmp_path / "notes.pt", what="checkpoint")
    torch.save({"a": torch.ones(2), "b": [1, "x"]}, tmp_path / "ok.pt")
    contents = read_weights(tmp_path / "ok.pt")
    assert torch.equal(contents["a"], torch.ones(2)) and contents["b"] == [1, "x"]


@pytest.mark.parametrize("kind", ["vgg16", "checkpoint"])
def test_init_reads_its_weights_file_once(tmp_path, monkeypatch, kind):
    if kind == "vgg16":
        path = tmp_path / "vgg16.pth"
        torch.save(randomize(TorchvisionStyleVGG16()).state_dict(), path)
    else:
        path = fcnseg.save(fcnseg.fcn32s(3, width=1 / 16), tmp_path / "fcn32s.pt")
    loads = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(weights_io.torch, "load", counting_load)
    report = initialize(fcnseg.fcn16s(3, width=1 / 16), str(path))
    assert report.kind == kind and report.copied
    assert loads == [True]  # one read, weights_only


def test_files_in_torchs_legacy_format_read(tmp_path):
    path = tmp_path / "old.pth"  # how published files such as torchvision's VGG16 are written
    torch.save({"w": torch.arange(3.0)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(read_weights(path)["w"], torch.arange(3.0))
