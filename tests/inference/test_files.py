"""predict_images: DataLoader decoding, equal-size batches, legends, --show figures, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from segment_fixtures import random_fcn

import fcnseg
from fcnseg.data.common import read_rgb
from fcnseg.data.synthetic import make_sample
from fcnseg.inference import files
from fcnseg.inference.files import list_images, predict_images
from helpers import PALETTE, direct_argmax, tiny_model, write_checkpoint


@pytest.fixture(scope="module")
def model():
    return random_fcn()


def write_images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, (h, w) in enumerate(sizes):
        image, _ = make_sample(i, h, w)
        arrays[f"im{i}"] = image.round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arrays[f"im{i}"]).save(folder / f"im{i}.png")
    return arrays


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_is_decoded_by_workers_and_batched_by_size(model, tmp_path, monkeypatch, workers):
    arrays = write_images(tmp_path / "in", [(40, 52), (40, 52), (40, 52), (33, 47), (40, 52)])
    batches = []
    real = files.segment
    monkeypatch.setattr(
        files, "segment", lambda m, b, **k: batches.append(len(b)) or real(m, b, **k)
    )
    ticks = []

    class Bar:
        def __init__(self, total):
            ticks.append(total)

        def update(self, n):
            ticks.append(n)

        def close(self):
            ticks.append("closed")

    result = predict_images(model, [tmp_path / "in"], tmp_path / "out", batch_size=2,
                            workers=workers, progress=Bar)  # fmt: skip
    assert batches == [2, 1, 1, 1]  # consecutive equal sizes, at most 2 at a time
    assert ticks == [5, 2, 1, 1, 1, "closed"]
    assert [image.name for image, _, _ in result.written] == [f"im{i}.png" for i in range(5)]
    for name, array in arrays.items():
        with Image.open(tmp_path / "out" / f"{name}.png") as label:
            assert label.mode == "P"
            assert torch.equal(torch.from_numpy(np.array(label)), fcnseg.segment(model, array))
        with Image.open(tmp_path / "out" / f"{name}_overlay.png") as blend:
            assert blend.size[1] >= array.shape[0] and blend.size[0] > array.shape[1]
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_show_with_truth_and_tiles_and_tta(model, tmp_path):
    arrays = write_images(tmp_path / "in", [(40, 52)])
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    truth = np.zeros((40, 52), np.uint8)
    truth[:, 30:] = 11  # not a class of this net: shown as unlabelled
    Image.fromarray(truth).save(truth_dir / "im0.png")
    out = tmp_path / "out"
    predict_images(model, [tmp_path / "in"], out, show=True, truth_dir=truth_dir, workers=0,
                   tile=160, overlap=96, flip=True, scales=(1.0, 1.5))  # fmt: skip
    with Image.open(out / "im0_show.png") as figure:
        assert figure.size[0] > 3 * 52
    expected = fcnseg.segment(model, arrays["im0"], flip=True, scales=(1.0, 1.5))
    with Image.open(out / "im0.png") as label:
        assert torch.equal(torch.from_numpy(np.array(label)), expected)


def test_unreadable_images_are_reported_and_setup_errors_raise(model, tmp_path):
    write_images(tmp_path / "in", [(20, 30)])
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = predict_images(model, [tmp_path / "in"], tmp_path / "out", workers=0)
    assert [p.name for p, _ in result.failed] == ["bad.png"]
    assert "cannot read image" in result.failed[0][1] and len(result.written) == 1
    with pytest.raises(ValueError, match="alpha must lie in 0..1"):
        predict_images(model, [tmp_path / "in"], tmp_path / "o2", alpha=2)
    with pytest.raises(FileNotFoundError, match="truth folder"):
        predict_images(model, [tmp_path / "in"], tmp_path / "o2", truth_dir=tmp_path / "none")
    assert not (tmp_path / "o2").exists()


# ------------------------------------------------- files of every kind, names, overlays, errors


@pytest.fixture
def tiny(tmp_path):
    return fcnseg.load(write_checkpoint(tmp_path / "tiny.pt"))


def write_inputs(folder):
    """RGB, grey and RGBA images of differing sizes, plus a non-image file that is skipped."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 256, (9, 31), dtype=np.uint8), "L").save(folder / "a.png")
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_indexed_pngs_and_overlays_of_rgb_grey_and_rgba_files(tiny, tmp_path):
    folder = write_inputs(tmp_path / "in")
    single = tmp_path / "single.jpg"
    Image.fromarray(np.full((14, 18, 3), 90, dtype=np.uint8)).save(single)
    out = tmp_path / "out"
    result = predict_images(tiny, [folder, single], out, alpha=0.25, legend=False, workers=0)
    assert [image.name for image, _, _ in result.written] == [
        "a.png",
        "b.png",
        "c.png",
        "single.jpg",
    ]
    assert not result.failed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}{suffix}" for stem in "abc" for suffix in (".png", "_overlay.png")
    ) + ["single.png", "single_overlay.png"]
    values = set()
    for image_path, label_path, overlay_path in result.written:
        image = read_rgb(image_path)  # grey and RGBA are read as RGB
        expected = direct_argmax(tiny, image)
        with Image.open(label_path) as written:
            assert written.mode == "P"
            assert written.getpalette()[:9] == [c for rgb in PALETTE for c in rgb]
            assert np.array_equal(np.asarray(written), expected.numpy())
        with Image.open(overlay_path) as blended:
            assert blended.mode == "RGB" and blended.size == (image.shape[2], image.shape[1])
            colours = np.asarray(PALETTE)[expected.numpy()]
            rgb = image.permute(1, 2, 0).numpy()
            assert np.allclose(np.asarray(blended), 0.75 * rgb + 0.25 * colours, atol=0.51)
        values |= set(expected.unique().tolist())
    assert len(values) > 1  # the check above is not vacuous


def test_labels_keep_the_image_size_under_an_input_scale(tmp_path):
    model = fcnseg.load(write_checkpoint(tmp_path / "half.pt", input_scale=0.5))
    result = predict_images(model, [write_inputs(tmp_path / "in")], tmp_path / "out", workers=0)
    assert len(result.written) == 3
    for image_path, label_path, _ in result.written:
        with Image.open(image_path) as source, Image.open(label_path) as label:
            assert label.size == source.size


def test_an_unreadable_image_is_named_and_the_rest_written(tiny, tmp_path):
    folder = write_inputs(tmp_path / "in")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = predict_images(tiny, [folder], tmp_path / "out", workers=0)
    assert [path.name for path, _ in result.failed] == ["broken.jpg"]
    assert "broken.jpg" in result.failed[0][1]
    assert len(result.written) == 3


def test_clashing_output_names_raise_before_writing(tiny, tmp_path):
    one, two = write_inputs(tmp_path / "one"), write_inputs(tmp_path / "two")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"one[/\\]a\.png and .*two[/\\]a\.png would both write"):
        predict_images(tiny, [one, two], out, workers=0)
    Image.new("RGB", (4, 4)).save(one / "b_overlay.jpg")  # b's overlay name
    with pytest.raises(ValueError, match="b_overlay.png"):
        predict_images(tiny, [one], out, workers=0)
    assert not out.exists()


def test_output_may_not_overwrite_an_input(tiny, tmp_path):
    folder = write_inputs(tmp_path / "in")
    with pytest.raises(ValueError, match="would overwrite the input image"):
        predict_images(tiny, [folder], folder, workers=0)


def test_input_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        list_images([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images .* in folder .*empty"):
        list_images([tmp_path / "empty"])
    folder = write_inputs(tmp_path / "in")
    assert len(list_images([folder, folder / "a.png"])) == 3  # each file once
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha must lie in 0..1"):
            predict_images(tiny, [folder], tmp_path / "out", alpha=alpha)
    assert not (tmp_path / "out").exists()


def test_net_with_other_channel_counts_is_refused(tmp_path):
    model = tiny_model(in_channels=4)
    with pytest.raises(ValueError, match="takes 4 input channels.*RGB"):
        predict_images(model, [write_inputs(tmp_path / "in")], tmp_path / "out")
    assert not (tmp_path / "out").exists()
