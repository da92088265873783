"""Progressive resizing (``early_resolution`` for the first ``early_fraction`` of the steps):
the early phase sees the same view of each frame in fewer pixels, the phases split the run at
one step, and a run stopped inside either phase resumes exactly."""

from __future__ import annotations

import pytest
import torch

from fcnseg.data.transforms import ImageNetNormalize, RandomScaleCrop
from fcnseg.train.build import TrainTransform, resolution_phases
from fcnseg.train.distributed import Processes
from fcnseg.train.recipe import Recipe, RecipeError
from fcnseg.train.trainer import Trainer
from helpers import kill_resume_and_compare, tiny_recipe, write_tiny_dataset


def test_phases_split_the_run_at_the_fraction() -> None:
    recipe = Recipe(crop_size=[16, 16], early_resolution=0.5, early_fraction=0.4)
    assert resolution_phases(recipe, 10) == [(0, 4, 0.5), (4, 10, 1.0)]
    assert resolution_phases(Recipe(), 10) == [(0, 10, 1.0)]
    same = Recipe(crop_size=[16, 16], early_resolution=1.0, early_fraction=0.4)
    assert resolution_phases(same, 10) == [(0, 10, 1.0)]
    tiny = Recipe(crop_size=[16, 16], early_resolution=0.5, early_fraction=0.01)
    assert resolution_phases(tiny, 10) == [(0, 10, 1.0)]  # rounds to no early step


def test_the_early_transform_scales_crop_and_scale_range_alike() -> None:
    image, label = torch.rand(3, 40, 60) * 255, torch.randint(0, 4, (40, 60))
    recipe = Recipe(preprocessing="imagenet", crop_size=[20, 30], scale_range=[0.8, 1.2])
    early = TrainTransform(recipe, ImageNetNormalize(), 255, resolution=0.7)
    assert early.crop_size == (14, 21)
    assert early.scale_range == pytest.approx((0.56, 0.84))
    out, out_label = early(image, label, torch.Generator().manual_seed(5))
    crop = RandomScaleCrop((14, 21), (0.56, 0.84), 255, 0.0, torch.Generator().manual_seed(5))
    expected, expected_label = crop(*ImageNetNormalize()(image, label))
    assert torch.equal(out, expected) and torch.equal(out_label, expected_label)
    assert out.shape[-2:] == (14, 21)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"early_resolution": 0.0}, "key 'early_resolution' must be in \\(0, 1\\]"),
        ({"early_resolution": 1.5}, "key 'early_resolution' must be in \\(0, 1\\]"),
        ({"early_fraction": 1.0}, "key 'early_fraction' must be in \\[0, 1\\)"),
        ({"early_fraction": 0.5, "crop_size": []}, "key 'early_fraction' needs crop_size"),
    ],
)
def test_bad_schedules_are_named(changes, message) -> None:
    with pytest.raises(RecipeError, match=message):
        Recipe(**{"crop_size": [16, 16], **changes})


def test_the_run_takes_small_batches_first_then_full_ones(tmp_path) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    recipe = tiny_recipe(
        data,
        tmp_path / "run",
        iterations=5,
        crop_size=[20, 20],
        scale_range=[0.75, 1.25],
        early_resolution=0.5,
        early_fraction=0.6,
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
        early_resolution=0.5,
        early_fraction=0.5,
        schedule="onecycle",
        checkpoint_every=2,
        log_every=3,
    )
    # Saved at 2, killed after 3: the resumed run redoes step 3 small, then crosses into the
    # full-size phase at 4.
    whole, _ = kill_resume_and_compare(recipe, tmp_path, kill_after=3, saved_at=2)
    assert whole.iteration == 8
