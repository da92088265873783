"""save/load keep a net with its builder, settings and metadata; loads are weights_only."""

import pickle

import pytest
import torch

import fcnseg
from fcnseg.checkpoint import CheckpointError, atomic_save
from fcnseg.metadata import Metadata


@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"])
def test_round_trip(tmp_path, arch):
    model = getattr(fcnseg, arch)(num_classes=4, width=1 / 16, batch_norm=True).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p)
    path = fcnseg.save(model, tmp_path / "m.pt", classes=["a", "b", "c", "d"], palette=[[0, 0, 0]])
    loaded = fcnseg.load(path).eval()
    assert loaded.arch == arch and loaded.config == model.config
    expected = Metadata(classes=("a", "b", "c", "d"), palette=((0, 0, 0),))
    assert fcnseg.metadata_of(loaded) == expected
    x = torch.randn(1, 3, 21, 23)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_untrusted_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save({"format": "fcnseg", "payload": Evil()}, f, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="evil.pt"):
        fcnseg.load(path)
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="evil.pt"):
        fcnseg.load(path)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt does not exist"):
        fcnseg.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt is not an fcnseg checkpoint"):
        fcnseg.load(tmp_path / "other.pt")
    torch.save(
        {"format": "fcnseg", "arch": "fcn99s", "settings": {}, "state_dict": {}}, tmp_path / "a.pt"
    )
    with pytest.raises(CheckpointError, match="fcn99s"):
        fcnseg.load(tmp_path / "a.pt")
    model = fcnseg.fcn32s(num_classes=3, width=1 / 16)
    fcnseg.save(model, tmp_path / "t.pt")
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="t.pt"):
        fcnseg.load(tmp_path / "t.pt")


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"v": 1}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"v": Unsaveable()}, path)
    assert torch.load(path, weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_load_in_the_other_geometry_keeps_the_weights(tmp_path):
    model = fcnseg.fcn8s(num_classes=3, width=1 / 16, geometry="fast").eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    path = fcnseg.save(model, tmp_path / "fast.pt")
    reference = fcnseg.load(path, geometry="reference").eval()
    assert reference.config.geometry == "reference"
    assert fcnseg.load(path).config.geometry == "fast"
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        fast_scores, reference_scores = model(x), reference(x)
    # both give image-sized scores; the padding differs, so the values do too
    assert fast_scores.shape == reference_scores.shape == (1, 3, 37, 45)
    assert not torch.allclose(fast_scores, reference_scores)
    built = fcnseg.fcn8s(num_classes=3, width=1 / 16, geometry="reference").eval()
    built.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(reference_scores, built(x), rtol=0, atol=0)


def test_geometry_override_errors_name_the_file(tmp_path):
    path = fcnseg.save(fcnseg.models.fcn_alexnet(num_classes=3, width=1 / 16), tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"a\.pt: fcn_alexnet has no geometry choice"):
        fcnseg.load(path, geometry="fast")
    path = fcnseg.save(fcnseg.fcn8s(num_classes=3, width=1 / 16), tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match="geometry 'wide' is not one of"):
        fcnseg.load(path, geometry="wide")


def test_load_returns_eval_mode(tmp_path):
    model = fcnseg.fcn8s(num_classes=3, width=1 / 16, batch_norm=True).train()
    loaded = fcnseg.load(fcnseg.save(model, tmp_path / "m.pt"))
    assert not loaded.training and not any(m.training for m in loaded.modules())
