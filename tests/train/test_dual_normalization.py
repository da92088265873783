"""preprocessing = "imagenet+per_image": the net reads each image normalised both ways, by
ImageNet's statistics and by its own, as 2 x 3 channels; scoring rebuilds both from the
checkpoint and takes RGB images as any net does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import fcnseg
from fcnseg.checkpoint import CheckpointError, ensemble
from fcnseg.data.transforms import (
    ConcatNormalize,
    ImageNetNormalize,
    PerImageNormalize,
    normalized_channels,
)
from fcnseg.errors import FcnsegError
from fcnseg.inference.predict import in_channels_of
from fcnseg.train import train
from fcnseg.train.build import make_normalizer
from helpers import tiny_recipe, write_tiny_dataset


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dual")
    data = write_tiny_dataset(root / "data")
    out = {}
    for name, preprocessing, seed in [
        ("dual", "imagenet+per_image", 0),
        ("dual_seed1", "imagenet+per_image", 1),
        ("imagenet", "imagenet", 0),
    ]:
        recipe = tiny_recipe(data, root / name, preprocessing=preprocessing, seed=seed)
        # validated during the run too: the trainer's own net, before any checkpoint
        result = train(recipe.replace(iterations=2, val_every=2, val_images=2))
        assert result.metrics is not None and 0 <= result.metrics["mean_iu"] <= 1
        out[name] = root / name / "last.pt"
    return out


def test_the_normaliser_is_imagenets_then_the_images_own():
    normalizer = make_normalizer("imagenet+per_image", 3)
    assert isinstance(normalizer, ConcatNormalize)
    assert (
        normalized_channels(normalizer, 3) == 6 and normalized_channels(ImageNetNormalize(), 3) == 3
    )
    image = torch.rand(2, 3, 9, 11) * 255
    both = normalizer(image, None)[0]
    assert both.shape == (2, 6, 9, 11)
    torch.testing.assert_close(both[:, :3], ImageNetNormalize()(image, None)[0])
    torch.testing.assert_close(both[:, 3:], PerImageNormalize()(image, None)[0])
    # the second half does not see a change of exposure; the first does
    brighter = normalizer(image * 0.5, None)[0]
    assert not torch.allclose(brighter[:, :3], both[:, :3])
    # (x / 2 - m / 2) / (s / 2 + 1) = (x - m) / (s + 2): eps, in raw units, is all that moves
    torch.testing.assert_close(brighter[:, 3:], PerImageNormalize(eps=2.0)(image, None)[0])


def test_the_net_takes_six_channels_and_scores_rgb_images(runs):
    model = fcnseg.load(runs["dual"])
    assert model.config.in_channels == 6 and in_channels_of(model) == 3
    spec = fcnseg.metadata_of(model).preprocessing
    assert spec == ConcatNormalize([ImageNetNormalize(), PerImageNormalize()]).spec()
    image = (torch.rand(3, 24, 24) * 255).to(torch.uint8)
    probabilities = fcnseg.segment(model, image, probabilities=True, flip=False, scales=[1.0])[1]
    x = make_normalizer("imagenet+per_image", 3)(image.float()[None], None)[0]
    with torch.no_grad():
        expected = model.eval()(x).softmax(1)[0]
    torch.testing.assert_close(probabilities, expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(FcnsegError, match="6 channels"):
        fcnseg.segment(model, torch.zeros(6, 24, 24, dtype=torch.uint8))


def test_ensembles_of_such_nets_take_rgb_and_mixed_ones_are_refused(runs, tmp_path):
    pair = ensemble([runs["dual"], runs["dual_seed1"]])
    assert not pair.split_input and in_channels_of(pair) == 3
    image = (torch.rand(3, 24, 24) * 255).to(torch.uint8)
    probabilities = fcnseg.segment(pair, image, probabilities=True, flip=False, scales=[1.0])[1]
    each = [
        fcnseg.segment(fcnseg.load(p), image, probabilities=True, flip=False, scales=[1.0])[1]
        for p in (runs["dual"], runs["dual_seed1"])
    ]
    torch.testing.assert_close(probabilities, sum(each) / 2, atol=1e-5, rtol=1e-5)
    with pytest.raises(
        CheckpointError, match="scores 3 classes from 3 channels, member 0 3 from 6"
    ):
        ensemble([runs["dual"], runs["imagenet"]])
