"""predict: indexed label PNGs equal the net's argmax, with its palette; overlays; input walking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import fcnseg
from fcnseg.data.common import read_rgb
from fcnseg.inference.predict import (
    class_names,
    input_scale_of,
    list_images,
    palette_for,
    predict_files,
    predict_image,
)
from helpers import NORMALIZE, PALETTE, tiny_model, write_checkpoint


@pytest.fixture
def model(tmp_path):
    return fcnseg.load(write_checkpoint(tmp_path / "tiny.pt"))


def argmax(model, image):
    """The net's label map computed directly, for comparison."""
    model.eval()
    with torch.no_grad():
        return model(NORMALIZE(image, None)[0][None]).argmax(1)[0]


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


def test_predict_image_is_the_argmax_at_any_size(model):
    for h, w in [(1, 1), (9, 31), (40, 17)]:
        image = torch.rand(3, h, w) * 255
        label = predict_image(model, image, NORMALIZE)
        assert label.shape == (h, w) and label.dtype == torch.int64
        assert torch.equal(label, argmax(model, image))
    with pytest.raises(ValueError, match="image has 1 channels; the net takes 3"):
        predict_image(model, torch.rand(1, 8, 8), NORMALIZE)


def test_input_scale_resizes_and_keeps_the_label_size(tmp_path):
    model = fcnseg.load(write_checkpoint(tmp_path / "half.pt", input_scale=0.5))
    assert input_scale_of(model) == 0.5
    image = torch.rand(3, 17, 23) * 255
    x = F.interpolate(NORMALIZE(image, None)[0][None], size=(9, 12), mode="bilinear")
    with torch.no_grad():
        scores = F.interpolate(model.eval()(x), size=(17, 23), mode="bilinear")
    assert torch.equal(predict_image(model, image, NORMALIZE, 0.5), scores.argmax(1)[0])
    result = predict_files(model, [write_inputs(tmp_path / "in")], tmp_path / "out")
    for image_path, label_path, _ in result.written:
        with Image.open(image_path) as source, Image.open(label_path) as label:
            assert label.size == source.size


def test_predict_files_writes_indexed_pngs_and_overlays(model, tmp_path):
    folder = write_inputs(tmp_path / "in")
    single = tmp_path / "single.jpg"
    Image.fromarray(np.full((14, 18, 3), 90, dtype=np.uint8)).save(single)
    out = tmp_path / "out"
    result = predict_files(model, [folder, single], out, alpha=0.25)
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
        expected = argmax(model, image)
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


def test_unreadable_image_is_reported_and_the_rest_written(model, tmp_path):
    folder = write_inputs(tmp_path / "in")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = predict_files(model, [folder], tmp_path / "out")
    assert [path.name for path, _ in result.failed] == ["broken.jpg"]
    assert "broken.jpg" in result.failed[0][1]
    assert len(result.written) == 3


def test_clashing_output_names_raise_before_writing(model, tmp_path):
    one, two = write_inputs(tmp_path / "one"), write_inputs(tmp_path / "two")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"one[/\\]a\.png and .*two[/\\]a\.png would both write"):
        predict_files(model, [one, two], out)
    Image.new("RGB", (4, 4)).save(one / "b_overlay.jpg")  # b's overlay name
    with pytest.raises(ValueError, match="b_overlay.png"):
        predict_files(model, [one], out)
    assert not out.exists()


def test_output_may_not_overwrite_an_input(model, tmp_path):
    folder = write_inputs(tmp_path / "in")
    with pytest.raises(ValueError, match="would overwrite the input image"):
        predict_files(model, [folder], folder)


def test_input_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        list_images([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images .* in folder .*empty"):
        list_images([tmp_path / "empty"])
    folder = write_inputs(tmp_path / "in")
    assert len(list_images([folder, folder / "a.png"])) == 3  # each file once
    with pytest.raises(ValueError, match="alpha"):
        predict_files(model, [folder], tmp_path / "out", alpha=1.5)


def test_net_with_other_channel_counts_is_refused(tmp_path):
    model = tiny_model(in_channels=4)
    with pytest.raises(ValueError, match="takes 4 input channels.*RGB"):
        predict_files(model, [write_inputs(tmp_path / "in")], tmp_path / "out")


def test_missing_classes_and_palette_fall_back(tmp_path):
    model = fcnseg.load(write_checkpoint(tmp_path / "bare.pt", classes=None, palette=None))
    assert class_names(model) == ["0", "1", "2"]
    assert palette_for(model) == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]  # VOC's first colours
