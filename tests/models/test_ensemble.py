"""Ensembles: the mean of the members' probabilities, exactly, wherever a net is scored; saved
and loaded as one model file; members that do not share input or classes are refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fcnseg
from fcnseg.checkpoint import CheckpointError, ensemble
from fcnseg.cli import main
from fcnseg.data.transforms import ImageNetNormalize, PerImageNormalize
from fcnseg.interop.export import export_torchscript, load_torchscript
from fcnseg.models import fcn2s, fcn8s
from fcnseg.models.ensemble import Ensemble

CLASSES = ("sky", "road", "car", "tree")


def member(seed: int, **settings) -> nn.Module:
    """A small trained-looking FCN-2s (random weights, so members disagree)."""
    torch.manual_seed(seed)
    settings = {"num_classes": 4, "width": 1 / 16, "batch_norm": True, "geometry": "fast"}
    model = fcn2s(**{**settings, "learnable_upsampling": True}).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            nn.init.normal_(parameter, std=0.3)
    model.metadata = fcnseg.Metadata(
        preprocessing=ImageNetNormalize().spec(),
        classes=CLASSES,
        test_time_augmentation={"flip": True, "scales": [1.0, 1.5]},
    )
    return model


@pytest.fixture
def saved(tmp_path):
    return [fcnseg.save(member(seed), tmp_path / f"m{seed}.pt") for seed in (0, 1, 2)]


def test_scores_are_the_log_of_the_members_mean_probability():
    members = [member(0), member(1), member(2)]
    x = torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        probabilities = [m(x).softmax(1) for m in members]
        scores = Ensemble(members)(x)
        alone = Ensemble(members[:1])(x)
    assert scores.shape == (2, 4, 37, 53)
    assert (probabilities[0] - probabilities[1]).abs().max() > 0.5  # the members disagree
    mean = sum(probabilities) / 3
    torch.testing.assert_close(scores.exp(), mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(alone.exp(), probabilities[0], atol=1e-6, rtol=1e-5)


def test_segment_with_a_flip_averages_the_members_views(saved):
    """Views and members are both averaged in probability, so the ensemble's flipped views
    equal the mean of each member's. (A view at another scale resizes the ensemble's scores,
    the log of the mean probability, as it resizes any net's scores, before the softmax: close
    to the mean of the members' resized probabilities, not equal.)"""
    model = ensemble(saved)
    image = (torch.rand(3, 45, 61) * 255).to(torch.uint8)
    views = {"flip": True, "scales": [1.0]}
    labels, probabilities = fcnseg.segment(model, image, probabilities=True, **views)
    each = [fcnseg.segment(fcnseg.load(p), image, probabilities=True, **views)[1] for p in saved]
    torch.testing.assert_close(probabilities, sum(each) / 3, atol=1e-5, rtol=1e-5)
    assert torch.equal(labels, probabilities.argmax(0).to(labels.dtype))
    recorded = fcnseg.segment(model, image, probabilities=True)[1]  # flip, scales 1 1.5
    tiled = fcnseg.segment(model, image, probabilities=True, tile=64, overlap=16)[1]
    assert tiled.shape == recorded.shape and not torch.equal(recorded, probabilities)


def test_an_ensemble_saves_and_loads_as_one_model(saved, tmp_path):
    model = ensemble(saved)
    meta = fcnseg.metadata_of(model)
    assert meta.classes == CLASSES and meta.extra["ensemble_of"] == ["m0.pt", "m1.pt", "m2.pt"]
    assert meta.test_time_augmentation == {"flip": True, "scales": [1.0, 1.5]}
    path = fcnseg.save(model, tmp_path / "ensemble.pt")
    loaded = fcnseg.load(path)
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 3
    assert [m.arch for m in loaded.members] == ["fcn2s"] * 3
    x = torch.randn(1, 3, 29, 31)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    traced = export_torchscript(loaded, tmp_path / "ensemble.ts")  # checked at several sizes
    assert load_torchscript(traced)[1]["settings"]["members"][0]["arch"] == "fcn2s"


def per_image_member(seed: int) -> nn.Module:
    model = member(seed)
    model.metadata = model.metadata.updated(preprocessing=PerImageNormalize().spec())
    return model


def test_members_must_share_input_size_and_classes(saved, tmp_path):
    other = member(3)
    other.metadata = other.metadata.updated(input_scale=0.5)
    half = fcnseg.save(other, tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match="half.pt has input_scale 0.5"):
        ensemble([saved[0], half])
    five = fcn8s(num_classes=5, width=1 / 16)
    five.metadata = fcnseg.Metadata(preprocessing=ImageNetNormalize().spec())
    with pytest.raises(CheckpointError, match="classes"):
        ensemble([saved[0], fcnseg.save(five, tmp_path / "five.pt")])
    with pytest.raises(CheckpointError, match="two or more"):
        ensemble(saved[:1])
    with pytest.raises(ValueError, match="member 1 scores 5 classes"):
        Ensemble([member(0), five])
    nested = fcnseg.save(ensemble(saved[:2]), tmp_path / "e01.pt")
    with pytest.raises(CheckpointError, match=r"e01.pt is an ensemble already.*\(m0.pt, m1.pt\)"):
        ensemble([nested, saved[2]])
    with pytest.raises(ValueError, match="member 0 is an ensemble itself"):
        Ensemble([fcnseg.load(nested), member(2)])
    unrecorded = member(4)
    unrecorded.metadata = unrecorded.metadata.updated(preprocessing=None)
    bare = fcnseg.save(unrecorded, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="bare.pt records no preprocessing"):
        ensemble([saved[0], bare])


def test_members_with_other_preprocessing_each_see_their_own_input(saved, tmp_path):
    """An ImageNet-normalised member and a per-image-normalised one: the ensemble takes the
    image normalised both ways, side by side in the channels, and scores exactly the mean of
    what each member scores on its own, whole or in tiles (per-image statistics of the whole
    image, not the tile's), and after a save, load and export."""
    mixed = fcnseg.save(per_image_member(3), tmp_path / "per-image.pt")
    paths = [saved[0], mixed]
    model = ensemble(paths)
    assert model.split_input and model.input_channels == 6
    assert fcnseg.metadata_of(model).preprocessing == {
        "type": "ConcatNormalize",
        "parts": [ImageNetNormalize().spec(), PerImageNormalize().spec()],
    }
    image = torch.rand(3, 70, 100) * 255
    image[:, :, 50:] *= 0.2  # a dark right half: a tile's own statistics differ from the image's
    image = image.to(torch.uint8)
    for views in ({"flip": True, "scales": [1.0]}, {"tile": 64, "overlap": 16, "scales": [1.0]}):
        probabilities = fcnseg.segment(model, image, probabilities=True, **views)[1]
        each = [
            fcnseg.segment(fcnseg.load(p), image, probabilities=True, **views)[1] for p in paths
        ]
        torch.testing.assert_close(probabilities, sum(each) / 2, atol=1e-5, rtol=1e-5)
    loaded = fcnseg.load(fcnseg.save(model, tmp_path / "mixed.pt"))
    assert loaded.split_input and loaded.settings()["split_input"] is True
    x = torch.randn(1, 6, 29, 31)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match=r"takes 6 input channels \(2 members x 3\), got 3"):
        loaded(x[:, :3])
    traced = export_torchscript(loaded, tmp_path / "mixed.ts")  # checked at several sizes
    meta = load_torchscript(traced)[1]
    assert meta["settings"]["split_input"] is True
    assert meta["preprocessing"]["type"] == "ConcatNormalize"


def test_a_damaged_ensemble_file_names_itself(saved, tmp_path):
    path = fcnseg.save(ensemble(saved[:2]), tmp_path / "e.pt")
    contents = torch.load(path, weights_only=True)
    contents["settings"]["members"][1]["arch"] = "no_such_net"
    torch.save(contents, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt \(member 1\) names arch 'no_such_net'"):
        fcnseg.load(tmp_path / "bad.pt")
    contents["settings"]["members"][1]["arch"] = "fcn2s"
    contents["settings"]["split_input"] = "yes"
    torch.save(contents, tmp_path / "split.pt")
    with pytest.raises(CheckpointError, match="split.pt: split_input must be true or false"):
        fcnseg.load(tmp_path / "split.pt")
    contents["settings"] = {"members": []}
    torch.save(contents, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="must list its 'members'"):
        fcnseg.load(tmp_path / "empty.pt")


def test_cli_ensemble(saved, tmp_path, capsys):
    out = tmp_path / "ensemble.pt"
    assert main(["ensemble", *map(str, saved[:2]), "--out", str(out)]) == 0
    assert "the mean probability of 2 nets" in capsys.readouterr().out
    assert isinstance(fcnseg.load(out), Ensemble)
    mixed = fcnseg.save(per_image_member(3), tmp_path / "per-image.pt")
    assert main(["ensemble", str(saved[0]), str(mixed), "--out", str(out)]) == 0
    assert "2 nets, each on its own preprocessing" in capsys.readouterr().out
    assert fcnseg.load(out).split_input
    assert main(["ensemble", str(saved[0]), "--out", str(out)]) == 2
    assert "two or more" in capsys.readouterr().err
    assert main(["ensemble", str(saved[0]), str(tmp_path / "missing.pt"), "--out", "x.pt"]) == 2
    assert "missing.pt" in capsys.readouterr().err
