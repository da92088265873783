"""An early phase of the run (``early_fraction`` of the steps) with its own crops
(``early_crop_size``) and scales (``early_scale`` times ``scale_range``): smaller crops of the
same frames, or, with both, progressive resizing (the same view in fewer pixels). The phases
split the run at one step, and a run stopped inside the early phase resumes exactly."""

from __future__ import annotations

import pytest
import torch

from fcnseg.data.transforms import ImageNetNormalize, RandomScaleCrop
from fcnseg.train.build import TrainTransform, training_phases
from fcnseg.train.distributed import Processes
from fcnseg.train.recipe import Recipe, RecipeError
from fcnseg.train.trainer import Trainer
from helpers import kill_resume_and_compare, tiny_recipe, write_tiny_dataset


def phased(**changes: object) -> Recipe:
    """A recipe whose first half takes 14 x 21 crops at 0.7 times its scales."""
    recipe = Recipe(
        crop_size=[20, 30],
        scale_range=[0.8, 1.2],
        early_fraction=0.5,
        early_crop_size=[14, 21],
        early_scale=0.7,
    )
    return recipe.replace(**changes)


def test_phases_split_the_run_at_the_fraction() -> None:
    recipe = phased(early_fraction=0.4, early_scale=0.5)
    (first, stop, early), late = training_phases(recipe, 10)
    assert (first, stop) == (0, 4) and late == (4, 10, recipe)
    assert early.crop_size == [14, 21] and early.scale_range == pytest.approx([0.4, 0.6])
    only_crops = Recipe(crop_size=[20, 30], early_fraction=0.5, early_crop_size=[10, 10])
    (_, _, early), _ = training_phases(only_crops, 10)
    assert early.crop_size == [10, 10] and early.scale_range == [1.0, 1.0]
    assert training_phases(Recipe(), 10) == [(0, 10, Recipe())]
    tiny = Recipe(crop_size=[16, 16], early_fraction=0.01, early_scale=0.5)
    assert training_phases(tiny, 10) == [(0, 10, tiny)]  # rounds to no early step


def test_the_early_phase_crops_as_its_recipe_says() -> None:
    image, label = torch.rand(3, 40, 60) * 255, torch.randint(0, 4, (40, 60))
    (_, _, early), _ = training_phases(phased(preprocessing="imagenet"), 10)
    transform = TrainTransform(early, ImageNetNormalize(), 255)
    out, out_label = transform(image, label, torch.Generator().manual_seed(5))
    crop = RandomScaleCrop((14, 21), (0.56, 0.84), 255, 0.0, torch.Generator().manual_seed(5))
    expected, expected_label = crop(*ImageNetNormalize()(image, label))
    assert torch.equal(out, expected) and torch.equal(out_label, expected_label)
    assert out.shape[-2:] == (14, 21)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"early_scale": 0.0}, "key 'early_scale' must be > 0"),
        ({"early_crop_size": [8, 8, 8]}, "key 'early_crop_size' must be \\[\\], one int"),
        ({"early_crop_size": [0, 8]}, "key 'early_crop_size' must be >= 1 pixel"),
        ({"early_fraction": 1.0}, "key 'early_fraction' must be in \\[0, 1\\)"),
        ({"crop_size": []}, "key 'early_fraction' needs crop_size"),
        ({"early_crop_size": [], "early_scale": 1.0}, "needs early_crop_size or early_scale"),
    ],
)
def test_bad_phases_are_named(changes, message) -> None:
    base = {"crop_size": [16, 16], "early_fraction": 0.5, "early_crop_size": [8, 8]}
    with pytest.raises(RecipeError, match=message):
        Recipe(**{**base, **changes})


def test_one_int_is_a_square_early_crop() -> None:
    recipe = Recipe(crop_size=16, early_fraction=0.5, early_crop_size=8)
    assert recipe.early_crop_size == [8, 8]


def test_the_run_takes_small_batches_first_then_full_ones(tmp_path) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    recipe = tiny_recipe(
        data,
        tmp_path / "run",
        iterations=5,
        crop_size=[20, 20],
        scale_range=[0.75, 1.25],
        early_fraction=0.6,
        early_crop_size=[10, 10],
    )
    trainer = Trainer(recipe, Processes())
    assert [tuple(images.shape[-2:]) for images, _ in trainer._batches()] == [(10, 10)] * 3 + [
        (20, 20)
    ] * 2
    trainer.iteration = 4  # as a resumed run: only the late phase's last step
    assert [tuple(images.shape) for images, _ in trainer._batches()] == [(2, 3, 20, 20)]


def test_a_run_killed_in_the_early_phase_resumes_exactly(tmp_path) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    recipe = tiny_recipe(
        data,
        tmp_path / "whole",
        iterations=8,
        flip=True,
        crop_size=[20, 20],
        scale_range=[0.75, 1.25],
        early_fraction=0.5,
        early_crop_size=[12, 12],
        early_scale=0.6,
        schedule="onecycle",
        checkpoint_every=2,
        log_every=3,
    )
    # Saved at 2, killed after 3: the resumed run redoes step 3 small, then crosses into the
    # full-size phase at 4.
    whole, _ = kill_resume_and_compare(recipe, tmp_path, kill_after=3, saved_at=2)
    assert whole.iteration == 8
