"""``resume`` continues a run exactly: a run killed with SIGKILL and resumed ends bit-identical
to one never stopped (weights, optimiser state, best score, metrics log)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fcnseg.train import train
from fcnseg.train.recipe import RecipeError
from helpers import kill_resume_and_compare, tiny_recipe, write_tiny_dataset


def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    # Every source of randomness at once: shuffling, random scale, crop and flip, dropout's
    # masks (the global RNG), AdamW state, a one-cycle schedule, class weights, the best score
    # and a loss-log window open across the checkpoint.
    recipe = tiny_recipe(
        data,
        tmp_path / "whole",
        iterations=9,
        dropout=0.3,
        flip=True,
        crop_size=[20, 20],
        scale_range=[0.75, 1.25],
        schedule="onecycle",
        class_weights="median_frequency",
        val_every=3,
        log_every=2,
    )
    whole, _ = kill_resume_and_compare(recipe, tmp_path, kill_after=5, saved_at=3)  # 4, 5 lost
    assert whole.iteration == 9
    starts = json.loads((tmp_path / "stopped" / "run.json").read_text())["starts"]
    assert [s["iteration"] for s in starts] == [0, 3]


def test_resume_refuses_a_different_recipe_and_a_missing_run(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", train=4, val=1)
    recipe = tiny_recipe(data, tmp_path / "run", iterations=1, val_split="")
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(recipe, resume=True)
    train(recipe)
    with pytest.raises(RecipeError, match=r"net: 'fcn8s' -> 'fcn16s'"):
        train(dataclasses.replace(recipe, net="fcn16s", iterations=2), resume=True)
    with pytest.raises(FileExistsError, match="--resume"):
        train(recipe)
    longer = train(dataclasses.replace(recipe, iterations=2), resume=True)  # may lengthen
    assert longer.iteration == 2
