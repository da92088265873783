"""Loss sampling (section 3.4) from ``fcnseg train``: the masks are a pure function of (seed,
iteration, rank), so sampled runs repeat and resume exactly; the loss still falls."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fcnseg.checkpoint import read
from fcnseg.cli import main
from fcnseg.train import train
from fcnseg.train import trainer as train_module
from fcnseg.train.recipe import RecipeError, load
from fcnseg.train.sampler import loss_sample_generator
from helpers import losses, tiny_recipe, write_tiny_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("sampling") / "data", train=4, val=1)


def _weights(out) -> dict[str, torch.Tensor]:
    return read(out / "last.pt")["state_dict"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_mask_generator_is_a_pure_function_of_seed_iteration_and_rank():
    def draw(*key):
        return torch.rand(8, generator=loss_sample_generator(*key))

    assert torch.equal(draw(0, 5, 0), draw(0, 5, 0))
    for other in [(1, 5, 0), (0, 6, 0), (0, 5, 1)]:
        assert not torch.equal(draw(0, 5, 0), draw(*other)), other


def test_the_engine_computes_its_loss_through_segmentation_loss(data, tmp_path, monkeypatch):
    calls = []
    real = train_module.segmentation_loss

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "segmentation_loss", spy)
    common = {"iterations": 2, "val_split": "", "class_weights": "median_frequency"}
    train(tiny_recipe(data, tmp_path / "off", **common))
    (_, _, ignore, weight, normalize), kwargs = calls[-1]
    assert ignore == 255 and normalize == "mean" and weight.shape == (3,)
    assert kwargs["sample_rate"] is None and kwargs["generator"] is None  # sampling off

    calls.clear()
    recipe = tiny_recipe(data, tmp_path / "on", loss_sample_rate=0.25, loss="sum", **common)
    train(dataclasses.replace(recipe, loss_sample_rescale=False))
    (_, _, _, weight, normalize), kwargs = calls[-1]
    assert normalize == "sum" and weight.shape == (3,)
    assert kwargs["sample_rate"] == 0.25 and kwargs["rescale"] is False
    expected = loss_sample_generator(0, 1, 0).initial_seed()  # seed 0, the second step
    assert kwargs["generator"].initial_seed() == expected


def test_a_sampled_run_trains_and_repeats_exactly(data, tmp_path):
    recipe = tiny_recipe(
        data, tmp_path / "a", iterations=12, log_every=4, val_split="", loss_sample_rate=0.5
    )
    train(recipe)
    seen = losses(tmp_path / "a")
    assert len(seen) == 3 and seen[-1] < 0.8 * seen[0]

    short = dataclasses.replace(recipe, iterations=3, out=str(tmp_path / "b"))
    again = dataclasses.replace(short, out=str(tmp_path / "c"))
    unsampled = dataclasses.replace(short, out=str(tmp_path / "d"), loss_sample_rate=1.0)
    for run in (short, again, unsampled):
        train(run)
    assert _same(_weights(tmp_path / "b"), _weights(tmp_path / "c"))
    assert losses(tmp_path / "b") == losses(tmp_path / "c")
    assert not _same(_weights(tmp_path / "b"), _weights(tmp_path / "d"))  # the masks matter


def test_a_resumed_sampled_run_equals_an_uninterrupted_one(data, tmp_path):
    recipe = tiny_recipe(
        data,
        tmp_path / "whole",
        iterations=4,
        val_split="",
        flip=True,
        dropout=0.3,
        loss="sum",
        lr=1e-4,
        loss_sample_rate=0.3,
    )
    train(recipe)
    stopped = dataclasses.replace(recipe, out=str(tmp_path / "stopped"), iterations=2)
    train(stopped)
    resumed = train(dataclasses.replace(stopped, iterations=4), resume=True)
    assert resumed.iteration == 4
    assert _same(_weights(tmp_path / "whole"), _weights(tmp_path / "stopped"))
    assert losses(tmp_path / "whole") == losses(tmp_path / "stopped")


@pytest.mark.parametrize("rate", [0.0, -0.5, 1.5])
def test_the_rate_must_be_in_0_1(rate, tmp_path):
    with pytest.raises(RecipeError, match=r"loss_sample_rate' must be in \(0, 1\]"):
        tiny_recipe(tmp_path, tmp_path / "run", loss_sample_rate=rate)


def test_cli_flags(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--dataset", "folder", "--root", data, "--out", out, "--iterations", 1]
    args += ["--width", 1 / 16, "--val-split", "", "--device", "cpu"]
    args += ["--loss-sample-rate", 0.5, "--no-loss-sample-rescale"]
    assert main(["--threads", "1", "train", *map(str, args)]) == 0, capsys.readouterr().err
    saved = load(out / "recipe.toml")
    assert saved.loss_sample_rate == 0.5 and saved.loss_sample_rescale is False
