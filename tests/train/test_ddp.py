"""Two CPU processes under torchrun (gloo): sharded training, one writer, summed validation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import fcnseg
from fcnseg.checkpoint import read
from fcnseg.data import open_dataset
from fcnseg.evaluate.scoring import evaluate
from fcnseg.train.recipe import dumps
from helpers import tiny_recipe, write_tiny_dataset

GLOO_ABORT = "terminate called without an active exception"


def _torchrun(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.slow
def test_two_processes_train_and_validate_as_one(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", train=8, val=3)  # val 3: shards of 2 and 1
    out = tmp_path / "run"
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(dumps(tiny_recipe(data, out, iterations=4, val_every=2, log_every=2)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "fcnseg.cli", "--threads", "1"]
    command += ["train", "--recipe", str(recipe)]
    done = _torchrun(command)
    if done.returncode != 0 and GLOO_ABORT in done.stderr:
        # Rarely (twice in this project's CI runs so far, never in 8 runs of this file alone) a
        # rank dies with SIGABRT mid-run after this message of the C++ runtime: a std::thread
        # destroyed while joinable, in torch's distributed runtime (fcnseg runs no native
        # threads). Not what this test checks; any other failure, or this one twice, still fails.
        shutil.rmtree(out)  # the dead run's folder: start afresh
        done = _torchrun(command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained to iteration 4") == 1  # only rank 0 prints

    assert json.loads((out / "run.json").read_text())["starts"][0]["processes"] == 2
    training = read(out / "last.pt")["training"]
    assert training["world_size"] == 2 and len(training["rng"]) == 2  # both ranks' RNG states
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [2, 4]  # one writer
    last_val = [r for r in records if r.get("split") == "val"][-1]
    assert last_val["iteration"] == 4

    # The confusion matrices summed over the two shards equal one process scoring all images.
    model = fcnseg.load(out / "last.pt")
    metrics = evaluate(model, open_dataset("folder", data, "val")).compute()
    assert metrics["mean_iu"] == pytest.approx(last_val["mean_iu"], abs=1e-12)
    assert metrics["pixel_acc"] == pytest.approx(last_val["pixel_acc"], abs=1e-12)
