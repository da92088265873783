"""The training transform: colour jitter, hue and gamma on the raw image, then the preprocessing."""

from __future__ import annotations

import pytest
import torch

from fcnseg.data.transforms import ColorJitter, CutMix, ImageNetNormalize, PasteClasses
from fcnseg.train.build import TrainTransform
from fcnseg.train.recipe import Recipe, RecipeError


def test_jitter_comes_before_preprocessing_and_uses_the_generator() -> None:
    image = torch.rand(3, 6, 8) * 255
    label = torch.randint(0, 4, (6, 8))
    recipe = Recipe(
        preprocessing="imagenet", brightness=0.3, contrast=0.2, saturation=0.1, hue=0.05, gamma=0.4
    )
    transform = TrainTransform(recipe, ImageNetNormalize(), 255)
    out, out_label = transform(image, label, torch.Generator().manual_seed(7))
    jitter = ColorJitter(
        0.3, 0.2, 0.1, generator=torch.Generator().manual_seed(7), hue=0.05, gamma=0.4
    )
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


def test_paste_comes_first_and_names_are_the_train_splits_classes() -> None:
    image, label = torch.rand(3, 6, 8) * 255, torch.zeros(6, 8, dtype=torch.long)
    donors = [(torch.rand(3, 6, 8) * 255, torch.randint(0, 3, (6, 8)))]
    classes = ["sky", "pole", "road"]
    recipe = Recipe(preprocessing="imagenet", paste_classes=["pole"], paste_probability=1.0)
    transform = TrainTransform(recipe, ImageNetNormalize(), 255, donors, classes)
    out, out_label = transform(image, label, torch.Generator().manual_seed(3))
    paste = PasteClasses(donors, [1], 1.0, generator=torch.Generator().manual_seed(3))
    expected, expected_label = ImageNetNormalize()(*paste(image, label))
    assert torch.allclose(out, expected) and torch.equal(out_label, expected_label)
    assert (out_label == 1).any() and not (out_label == 2).any()
    with pytest.raises(RecipeError, match=r"names 'Pole', not classes .*: sky, pole, road"):
        TrainTransform(Recipe(paste_classes=["Pole"]), ImageNetNormalize(), 255, donors, classes)
    with pytest.raises(RecipeError, match="needs the train split"):
        TrainTransform(Recipe(paste_classes=["pole"]), ImageNetNormalize(), 255, None, classes)


def test_cutmix_comes_after_paste_and_before_jitter() -> None:
    image, label = torch.rand(3, 6, 8) * 255, torch.zeros(6, 8, dtype=torch.long)
    donors = [(torch.rand(3, 6, 8) * 255, torch.randint(1, 3, (6, 8)))]
    classes = ["sky", "pole", "road"]
    recipe = Recipe(preprocessing="imagenet", paste_classes=["pole"], paste_probability=1.0,
                    cutmix_probability=1.0, brightness=0.3)  # fmt: skip
    transform = TrainTransform(recipe, ImageNetNormalize(), 255, donors, classes)
    out, out_label = transform(image, label, torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)
    expected = PasteClasses(donors, [1], 1.0, generator=generator)(image, label)
    expected = CutMix(donors, 1.0, generator=generator)(*expected)
    expected = ImageNetNormalize()(*ColorJitter(0.3, generator=generator)(*expected))
    assert torch.allclose(out, expected[0]) and torch.equal(out_label, expected[1])
    assert (out_label == 2).any()  # CutMix brought a class that copy-paste of poles does not
    with pytest.raises(RecipeError, match="'cutmix_probability' needs the train split"):
        TrainTransform(Recipe(cutmix_probability=0.5), ImageNetNormalize(), 255, None, classes)
