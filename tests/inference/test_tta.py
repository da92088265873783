"""Test-time augmentation: flips and scales average the probabilities of each view."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segment_fixtures import NORMALIZE, TinyConvNet, random_fcn

import fcnseg
from fcnseg.inference.tta import Augmentation, SegmentError, class_probabilities


def probabilities(model, image, **options):
    return fcnseg.segment(model, image, probabilities=True, **options)[1]


def test_flip_changes_nothing_for_a_flip_equivariant_net():
    model = TinyConvNet(symmetric=True).eval()
    image = torch.rand(3, 21, 34) * 255
    with torch.no_grad():  # the net commutes with mirroring ...
        x = NORMALIZE(image, None)[0][None]
        torch.testing.assert_close(model(x.flip(-1)), model(x).flip(-1))
    torch.testing.assert_close(  # ... so the mirrored view is the same view
        probabilities(model, image, flip=True), probabilities(model, image)
    )


def test_flip_averages_the_mirrored_views():
    model = random_fcn()
    image = torch.rand(3, 37, 50) * 255
    with torch.no_grad():
        x = NORMALIZE(image, None)[0][None]
        plain = model(x).softmax(1)[0]
        mirrored = model(x.flip(-1)).flip(-1).softmax(1)[0]
    assert not torch.allclose(plain, mirrored)  # this net is not symmetric
    torch.testing.assert_close(probabilities(model, image, flip=True), (plain + mirrored) / 2)


def test_scales_average_resized_views_on_top_of_the_input_scale():
    model = random_fcn()
    model.metadata = fcnseg.metadata_of(model).updated(input_scale=0.5)
    image = torch.rand(3, 40, 60) * 255
    expected = []
    with torch.no_grad():
        x = NORMALIZE(image, None)[0][None]
        for size in [(15, 23), (20, 30), (25, 38)]:  # 40 x 60 at 0.5 x (0.75, 1, 1.25)
            view = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            scores = F.interpolate(model(view), size=(40, 60), mode="bilinear")
            expected.append(scores.softmax(1)[0])
    result = probabilities(model, image, scales=(0.75, 1, 1.25))
    torch.testing.assert_close(result, sum(expected) / 3)
    labels = fcnseg.segment(model, image, scales=(0.75, 1, 1.25))
    assert torch.equal(labels.long(), result.argmax(0))


def test_tta_inside_tiles_matches_tta_on_the_whole_image():
    model = TinyConvNet(symmetric=False).eval()
    image = torch.rand(3, 40, 52) * 255
    whole = probabilities(model, image, flip=True, tile_above=None)
    tiled = probabilities(model, image, flip=True, tile=24, overlap=16)
    torch.testing.assert_close(tiled, whole, atol=2e-6, rtol=0)


def test_augmentation_arguments():
    assert Augmentation(flip=True, scales=(0.5, 1)).views == 4
    assert Augmentation(flip=True, scales=(0.5, 1)).to_dict() == {"flip": True, "scales": [0.5, 1]}
    assert str(Augmentation(scales=(0.75, 1, 1.25))) == "scales 0.75 1 1.25"
    for scales in [(), (0,), (float("nan"),), (-1,)]:
        with pytest.raises(SegmentError, match="scales must be finite"):
            Augmentation(scales=scales)
    with pytest.raises(SegmentError, match="not one N x K x H x W score tensor"):
        with torch.no_grad():
            class_probabilities(lambda x: {"sem": x}, torch.zeros(1, 3, 4, 4), NORMALIZE)
