"""``resume`` continues a run exactly: a run killed with SIGKILL and resumed ends bit-identical
to one never stopped (weights, optimiser state, best score, metrics log)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

import pytest

from fcnseg.checkpoint import read
from fcnseg.train import train
from fcnseg.train.recipe import RecipeError, dumps
from helpers import assert_same_tensors, records, tiny_recipe, write_tiny_dataset

# Runs the recipe in argv[1] and SIGKILLs itself right after the step numbered argv[2].
KILLED_RUN = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from fcnseg.train import train
from fcnseg.train.recipe import load

def kill(done, loss):
    if done == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)

train(load(sys.argv[1]), on_step=kill)
"""


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
    whole = train(recipe)

    stopped = dataclasses.replace(recipe, out=str(tmp_path / "stopped"))
    recipe_file = tmp_path / "stopped.toml"
    recipe_file.write_text(dumps(stopped))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(recipe_file), "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert read(tmp_path / "stopped" / "last.pt")["training"]["iteration"] == 3  # 4, 5 lost

    resumed = train(stopped, resume=True)
    assert resumed.iteration == whole.iteration == 9
    assert resumed.best_mean_iu == whole.best_mean_iu
    for name in ("last.pt", "best.pt"):
        a, b = read(tmp_path / "whole" / name), read(tmp_path / "stopped" / name)
        assert_same_tensors(a["state_dict"], b["state_dict"], f"{name} state_dict")
        assert_same_tensors(
            a["training"]["optimizer"], b["training"]["optimizer"], f"{name} optimizer"
        )
        assert a["training"]["iteration"] == b["training"]["iteration"]
    assert records(tmp_path / "whole") == records(tmp_path / "stopped")
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
