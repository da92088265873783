"""``ema_decay``: a run keeps an exponential moving average of its weights, validates it and
saves it as the model, without changing the weights it optimises; resume continues both."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import fcnseg
from fcnseg.checkpoint import read
from fcnseg.data import open_dataset
from fcnseg.evaluate.scoring import evaluate
from fcnseg.train import train
from fcnseg.train import trainer as trainer_module
from fcnseg.train.averaging import average_decay
from fcnseg.train.recipe import RecipeError
from fcnseg.train.validation import validate
from helpers import assert_same_tensors, kill_resume_and_compare, tiny_recipe, write_tiny_dataset

DECAY = 0.75


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def test_the_average_follows_the_weights_without_changing_them(data, tmp_path):
    # The weights after each of three steps, w1 w2 w3, from a run without averaging that is
    # lengthened by one step at a time (exact: the schedule is constant).
    plain = tiny_recipe(data, tmp_path / "plain", iterations=1, val_split="")
    steps = []
    for iterations in (1, 2, 3):
        train(dataclasses.replace(plain, iterations=iterations), resume=iterations > 1)
        steps.append(read(tmp_path / "plain" / "last.pt")["state_dict"])

    averaged = dataclasses.replace(plain, out=str(tmp_path / "ema"), iterations=3, ema_decay=DECAY)
    train(averaged)
    contents = read(tmp_path / "ema" / "last.pt")
    training = contents["training"]
    # the optimised weights are those of the run without averaging, bit for bit
    assert_same_tensors(training["trained_state_dict"], steps[-1], "trained weights")
    assert training["average"] == {"updates": 3}

    # e_3 = (d^2 w1 + d w2 + w3) / (d^2 + d + 1), for weights and BatchNorm statistics alike
    shares = [DECAY**2, DECAY, 1.0]
    expected = {
        name: sum(share * step[name] for share, step in zip(shares, steps)) / sum(shares)
        for name, value in steps[0].items()
        if value.is_floating_point()
    }
    model = contents["state_dict"]
    floating = [name for name, value in model.items() if value.is_floating_point()]
    assert any("running_var" in name for name in floating)
    assert sorted(floating) == sorted(expected)
    for name in floating:
        torch.testing.assert_close(model[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    # ... and it is not the optimised weights
    assert not all(torch.equal(model[name], steps[-1][name]) for name in floating)


@pytest.mark.parametrize("decay", [0.5, 0.999])
def test_the_running_update_is_the_exponentially_weighted_mean(decay):
    # a_t applied step by step gives sum_s d^(t-s) w_s / sum_s d^(t-s) at every t: no share
    # of the first step's weights survives beyond its own.
    weights = [3.0, -1.0, 4.0, 1.0, -5.0, 9.0]
    average = weights[0]
    for t in range(2, len(weights) + 1):
        a = average_decay(decay, t - 1)
        average = a * average + (1 - a) * weights[t - 1]
        shares = [decay ** (t - s) for s in range(1, t + 1)]
        mean = sum(share * w for share, w in zip(shares, weights)) / sum(shares)
        assert average == pytest.approx(mean, rel=1e-12, abs=1e-12)
    assert average_decay(0.5, 1) == pytest.approx(1 / 3)  # (0.5 w1 + w2) / 1.5
    assert average_decay(0.999, 10**6) == pytest.approx(0.999)  # late: the plain average


def test_validation_scores_the_average_that_the_checkpoint_holds(data, tmp_path, monkeypatch):
    scored = []

    def recording(model, *args, **kwargs):
        scored.append({k: v.clone() for k, v in model.state_dict().items()})
        return validate(model, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "validate", recording)
    out = tmp_path / "run"
    train(tiny_recipe(data, out, iterations=4, val_every=2, ema_decay=DECAY))
    assert len(scored) == 2
    contents = read(out / "last.pt")
    assert_same_tensors(scored[-1], contents["state_dict"], "the validated net")
    trained = contents["training"]["trained_state_dict"]
    assert not all(torch.equal(scored[-1][k], trained[k]) for k in trained)

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last_val = [r for r in records if r.get("split") == "val"][-1]
    model = fcnseg.load(out / "last.pt")  # a plain model: the average
    metrics = evaluate(model, open_dataset("folder", data, "val")).compute()
    assert metrics["mean_iu"] == pytest.approx(last_val["mean_iu"], abs=1e-12)
    assert metrics["pixel_acc"] == pytest.approx(last_val["pixel_acc"], abs=1e-12)


def test_a_killed_and_resumed_averaging_run_equals_an_uninterrupted_one(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    recipe = tiny_recipe(
        data,
        tmp_path / "whole",
        iterations=7,
        dropout=0.3,
        flip=True,
        schedule="onecycle",
        val_every=3,
        log_every=2,
        ema_decay=0.9,
    )
    kill_resume_and_compare(recipe, tmp_path, kill_after=4, saved_at=3)  # compares the averages
    for name in ("last.pt", "best.pt"):
        whole = read(tmp_path / "whole" / name)["training"]
        resumed = read(tmp_path / "stopped" / name)["training"]
        assert_same_tensors(
            whole["trained_state_dict"], resumed["trained_state_dict"], f"{name} weights"
        )
        assert whole["average"] == resumed["average"]
    assert read(tmp_path / "whole" / "last.pt")["training"]["average"] == {"updates": 7}


def test_ema_decay_is_checked_and_cannot_change_on_resume(data, tmp_path):
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(RecipeError, match=r"'ema_decay' must be in \[0, 1\)"):
            tiny_recipe(data, tmp_path / "bad", ema_decay=bad)
    recipe = tiny_recipe(data, tmp_path / "run", iterations=1, val_split="", ema_decay=0.5)
    train(recipe)
    with pytest.raises(RecipeError, match=r"ema_decay: 0.5 -> 0.9"):
        train(dataclasses.replace(recipe, ema_decay=0.9, iterations=2), resume=True)
    with pytest.raises(RecipeError, match=r"ema_decay: 0.5 -> 0.0"):
        train(dataclasses.replace(recipe, ema_decay=0.0, iterations=2), resume=True)
