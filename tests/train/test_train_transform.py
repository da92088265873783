"""The training transform: colour jitter and hue on the raw image, then the preprocessing."""

from __future__ import annotations

import torch

from fcnseg.data.transforms import ColorJitter, ImageNetNormalize
from fcnseg.train.build import TrainTransform
from fcnseg.train.recipe import Recipe


def test_jitter_comes_before_preprocessing_and_uses_the_generator() -> None:
    image = torch.rand(3, 6, 8) * 255
    label = torch.randint(0, 4, (6, 8))
    recipe = Recipe(
        preprocessing="imagenet", brightness=0.3, contrast=0.2, saturation=0.1, hue=0.05
    )
    transform = TrainTransform(recipe, ImageNetNormalize(), 255)
    out, out_label = transform(image, label, torch.Generator().manual_seed(7))
    jitter = ColorJitter(0.3, 0.2, 0.1, generator=torch.Generator().manual_seed(7), hue=0.05)
    expected, _ = ImageNetNormalize()(*jitter(image, label))
    assert torch.allclose(out, expected) and torch.equal(out_label, label)


def test_no_jitter_draws_nothing() -> None:
    """Recipes without jitter keep their augmentation draws (and figures) unchanged."""
    image, label = torch.rand(3, 6, 8) * 255, torch.randint(0, 4, (6, 8))
    transform = TrainTransform(Recipe(preprocessing="imagenet"), ImageNetNormalize(), 255)
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    out, _ = transform(image, label, generator)
    assert torch.equal(generator.get_state(), state)
    assert torch.equal(out, ImageNetNormalize()(image, label)[0])
