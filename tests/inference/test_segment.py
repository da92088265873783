"""fcnseg.segment: every input kind gives the net's labels at the input's size; EXIF; errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from segment_fixtures import NORMALIZE, random_fcn

import fcnseg
from fcnseg.data.synthetic import make_sample
from fcnseg.inference.predict import predict_image
from fcnseg.inference.segment import SegmentError


@pytest.fixture(scope="module")
def model():
    return random_fcn()


@pytest.fixture(scope="module")
def image():
    """An RGB image of shapes as uint8 H x W x 3 (its labels span several classes)."""
    picture, _ = make_sample(3, 45, 61)
    return picture.round().byte().permute(1, 2, 0).numpy()


def test_every_input_kind_gives_the_same_labels(model, image, tmp_path):
    expected = predict_image(model, torch.from_numpy(image).permute(2, 0, 1).float(), NORMALIZE)
    assert expected.unique().numel() > 1  # not a one-class image
    path = tmp_path / "shapes.png"
    Image.fromarray(image).save(path)
    chw = torch.from_numpy(image).permute(2, 0, 1)
    inputs = {
        "path": path,
        "str path": str(path),
        "PIL": Image.fromarray(image),
        "HWC uint8 array": image,
        "CHW uint8 tensor": chw,
        "CHW float 0..255 tensor": chw.float(),
    }
    for kind, given in inputs.items():
        labels = fcnseg.segment(model, given)
        assert labels.shape == image.shape[:2] and labels.dtype == torch.uint8, kind
        assert torch.equal(labels.long(), expected), kind


def test_grey_and_rgba_become_rgb(model, image):
    grey = image[:, :, 1]
    assert torch.equal(
        fcnseg.segment(model, grey), fcnseg.segment(model, np.stack([grey] * 3, axis=2))
    )
    assert torch.equal(
        fcnseg.segment(model, Image.fromarray(grey, "L")), fcnseg.segment(model, grey)
    )
    rgba = np.concatenate([image, np.full_like(image[:, :, :1], 7)], axis=2)
    assert torch.equal(fcnseg.segment(model, rgba), fcnseg.segment(model, image))
    assert torch.equal(
        fcnseg.segment(model, Image.fromarray(rgba, "RGBA")), fcnseg.segment(model, image)
    )


def test_input_scale_of_the_checkpoint_is_applied(image):
    model = random_fcn()
    model.metadata = fcnseg.metadata_of(model).updated(input_scale=0.5)
    raw = torch.from_numpy(image).permute(2, 0, 1).float()
    x = F.interpolate(NORMALIZE(raw, None)[0][None], size=(23, 31), mode="bilinear")
    with torch.no_grad():
        scores = F.interpolate(model(x), size=image.shape[:2], mode="bilinear")
    labels = fcnseg.segment(model, image)
    assert labels.shape == image.shape[:2]
    assert torch.equal(labels.long(), scores.argmax(1)[0])


def test_probabilities_on_request(model, image):
    labels, probabilities = fcnseg.segment(model, image, probabilities=True)
    assert probabilities.shape == (4, *image.shape[:2]) and probabilities.dtype == torch.float32
    torch.testing.assert_close(probabilities.sum(0), torch.ones(image.shape[:2]))
    assert torch.equal(probabilities.argmax(0), labels.long())
    raw = torch.from_numpy(image).permute(2, 0, 1).float()
    with torch.no_grad():
        direct = model(NORMALIZE(raw, None)[0][None]).softmax(1)[0]
    torch.testing.assert_close(probabilities, direct)


def test_a_list_is_batched_and_keeps_its_order(model, image):
    small = image[:30, :40].copy()
    batch = [image, small, torch.from_numpy(image).permute(2, 0, 1), small]
    calls = []
    results = fcnseg.segment(model, batch, batch_size=2, progress=calls.append)
    assert [tuple(r.shape) for r in results] == [(45, 61), (30, 40), (45, 61), (30, 40)]
    for given, result in zip(batch, results):
        assert torch.equal(result, fcnseg.segment(model, given))
    assert sum(calls) == 4 and len(calls) == 2  # two batches of two equal-size images
    stacked = torch.from_numpy(np.stack([image, image])).permute(0, 3, 1, 2)
    assert len(fcnseg.segment(model, stacked)) == 2  # N x C x H x W: a batch


def test_exif_orientation_is_honoured(model, image, tmp_path):
    """A JPEG stored landscape with orientation 6 (rotate 90 degrees clockwise to view)."""
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    Image.fromarray(image).save(path, quality=95, exif=exif)
    with Image.open(path) as stored:
        assert stored.getexif()[0x0112] == 6
        pixels = np.asarray(stored.convert("RGB"))
    upright = np.ascontiguousarray(np.rot90(pixels, k=-1))  # clockwise
    labels = fcnseg.segment(model, path)
    assert labels.shape == (61, 45)  # width and height swapped
    assert torch.equal(labels, fcnseg.segment(model, upright))
    with Image.open(path) as opened:
        assert torch.equal(fcnseg.segment(model, opened), labels)


def test_float_values_in_0_1_are_warned_about(model, image, caplog):
    unit = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    with caplog.at_level(logging.WARNING, logger="fcnseg.inference.segment"):
        fcnseg.segment(model, unit)
    assert "0..255 scale" in caplog.text


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (np.zeros((5, 6, 3), np.float32), "arrays must be uint8"),
        (np.zeros((3, 20, 30), np.uint8), "looks like C x H x W"),
        (np.zeros((5, 6, 2), np.uint8), "has 2 channels; the net takes 3"),
        (torch.zeros(20, 30, 3), "looks like H x W x C: permute"),
        (torch.zeros(3, 5, 6, dtype=torch.int32), "uint8 or floating point"),
        (torch.zeros(5, 6), "C x H x W"),
        ([[1, 2]], "cannot segment a list"),
    ],
)
def test_bad_inputs_are_named(model, given, message):
    with pytest.raises(SegmentError, match=message):
        fcnseg.segment(model, [given] if isinstance(given, list) else given)


def test_bad_files_and_arguments(model, image, tmp_path):
    with pytest.raises(SegmentError, match="image file not found: .*missing.png"):
        fcnseg.segment(model, tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(SegmentError, match="cannot read image .*broken.png"):
        fcnseg.segment(model, broken)
    with pytest.raises(SegmentError, match="is a video"):
        fcnseg.segment(model, tmp_path / "clip.mp4")
    with pytest.raises(SegmentError, match="batch_size must be >= 1"):
        fcnseg.segment(model, image, batch_size=0)
    with pytest.raises(SegmentError, match="scales must be finite"):
        fcnseg.segment(model, image, scales=[0])
