"""predict: label maps are the net's argmax at any size and input scale; metadata fallbacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fcnseg
from fcnseg.inference.predict import class_names, input_scale_of, palette_for, predict_image
from helpers import NORMALIZE, direct_argmax, write_checkpoint


@pytest.fixture
def model(tmp_path):
    return fcnseg.load(write_checkpoint(tmp_path / "tiny.pt"))


def test_predict_image_is_the_argmax_at_any_size(model):
    for h, w in [(1, 1), (9, 31), (40, 17)]:
        image = torch.rand(3, h, w) * 255
        label = predict_image(model, image, NORMALIZE)
        assert label.shape == (h, w) and label.dtype == torch.int64
        assert torch.equal(label, direct_argmax(model, image))
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


def test_missing_classes_and_palette_fall_back(tmp_path):
    model = fcnseg.load(write_checkpoint(tmp_path / "bare.pt", classes=None, palette=None))
    assert class_names(model) == ["0", "1", "2"]
    assert palette_for(model) == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]  # VOC's first colours


class Tie(torch.nn.Module):
    """Scores 0, 1e-9 and -1 at every pixel: classes 0 and 1 differ by less than float32 can
    tell apart after a softmax (exp(-1e-9) rounds to 1), but not as raw scores."""

    num_classes = 3

    def forward(self, x):
        scores = torch.tensor([0.0, 1e-9, -1.0]).view(1, 3, 1, 1)
        return scores.expand(x.shape[0], 3, *x.shape[-2:]).clone()


def test_segment_labels_are_predict_images_even_where_softmax_ties():
    model, image = Tie(), torch.rand(3, 5, 7) * 255
    with torch.no_grad():
        assert (model(image[None]).softmax(1)[:, 0] == model(image[None]).softmax(1)[:, 1]).all()
    label = predict_image(model, image, NORMALIZE)
    assert (label == 1).all()  # the argmax of the raw scores
    assert torch.equal(fcnseg.segment(model, image, preprocess=NORMALIZE).long(), label)
