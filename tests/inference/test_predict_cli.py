"""fcnseg predict's new flags: tiles, TTA, --show with truth, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from segment_fixtures import random_fcn

import fcnseg
from fcnseg.cli import main
from fcnseg.data.synthetic import make_sample


@pytest.fixture
def setup(tmp_path):
    model = random_fcn()
    checkpoint = fcnseg.save(model, tmp_path / "net.pt")
    image, _ = make_sample(5, 96, 130)
    array = image.round().byte().permute(1, 2, 0).numpy()
    (tmp_path / "in").mkdir()
    Image.fromarray(array).save(tmp_path / "in" / "photo.png")
    return fcnseg.load(checkpoint), str(checkpoint), array


def label_of(path):
    with Image.open(path) as label:
        return torch.from_numpy(np.array(label))


def test_tiles_and_tta_flags_reach_segment(setup, tmp_path):
    model, checkpoint, array = setup
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "in"), "--checkpoint", checkpoint, "--out", str(out),
                 "--device", "cpu", "--tile", "96", "--overlap", "64", "--tta", "flip",
                 "--scales", "0.75", "1", "--workers", "0"])  # fmt: skip
    assert code == 0
    expected = fcnseg.segment(model, array, tile=96, overlap=64, flip=True, scales=(0.75, 1))
    assert torch.equal(label_of(out / "photo.png"), expected)
    assert not torch.equal(expected, fcnseg.segment(model, array))  # the flags changed labels


def test_show_writes_a_figure_per_image(setup, tmp_path):
    _, checkpoint, array = setup
    truth = tmp_path / "truth"
    truth.mkdir()
    Image.fromarray(np.ones(array.shape[:2], np.uint8)).save(truth / "photo.png")
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "in"), "--checkpoint", checkpoint, "--out", str(out),
                 "--show", "--labels", str(truth), "--workers", "1"])  # fmt: skip
    assert code == 0
    assert (out / "photo_show.png").is_file()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tile", "96", "--overlap", "96"], "overlap must lie in 0..tile-1"),
        (["--tile", "16"], "smaller than the net's stride"),
        (["--scales", "0"], "scales must be finite numbers > 0"),
        (["--frames"], "--frames writes a video's label maps"),
        (["--batch-size", "0"], "batch_size must be >= 1"),
    ],
)
def test_bad_flags_exit_2_with_one_line(setup, tmp_path, capsys, flags, message):
    _, checkpoint, _ = setup
    code = main(["predict", str(tmp_path / "in"), "--checkpoint", checkpoint,
                 "--out", str(tmp_path / "out"), *flags])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("fcnseg predict: error: ") and message in err


def test_predict_applies_the_recorded_augmentation_unless_told_not_to(tmp_path, capsys):
    model = random_fcn()
    model.metadata = fcnseg.metadata_of(model).updated(
        test_time_augmentation={"flip": True, "scales": [0.75, 1.0]}
    )
    checkpoint = str(fcnseg.save(model, tmp_path / "net.pt"))
    image, _ = make_sample(5, 96, 130)
    array = image.round().byte().permute(1, 2, 0).numpy()
    (tmp_path / "in").mkdir()
    Image.fromarray(array).save(tmp_path / "in" / "photo.png")
    recorded = fcnseg.segment(model, array, flip=True, scales=(0.75, 1))
    one_view = fcnseg.segment(model, array, flip=False, scales=(1,))
    assert not torch.equal(recorded, one_view)
    for flags, expected in [([], recorded), (["--tta", "none"], one_view)]:
        out = tmp_path / f"out{len(flags)}"
        code = main(["predict", str(tmp_path / "in"), "--checkpoint", checkpoint,
                     "--out", str(out), "--workers", "0", *flags])  # fmt: skip
        assert code == 0
        assert torch.equal(label_of(out / "photo.png"), expected)
        printed = capsys.readouterr().out
        assert ("test-time augmentation: flip, scales 0.75 1 (4 views)" in printed) == (not flags)


def test_crf_flag_reaches_segment_and_is_printed(setup, tmp_path, capsys):
    from fcnseg.inference.crf import CRF

    model, checkpoint, array = setup
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "in"), "--checkpoint", checkpoint, "--out", str(out),
                 "--device", "cpu", "--crf", "--workers", "0"])  # fmt: skip
    assert code == 0
    expected = fcnseg.segment(model, array, crf=CRF())
    assert torch.equal(label_of(out / "photo.png"), expected)
    printed = capsys.readouterr().out
    assert "test-time augmentation: crf (weight 1, spatial 5, colour 5" in printed
    assert "5 iterations) (1 view)" in printed
