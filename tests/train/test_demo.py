"""The demo is an ordinary trainer run: it learns, and what it reports is what it saved."""

import json

import pytest
import torch

import fcnseg
from fcnseg.data import open_dataset
from fcnseg.data.common import DatasetError
from fcnseg.data.synthetic import SyntheticShapes, synthetic_split
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.inference.predict import normalizer_for
from fcnseg.train.build import make_normalizer
from fcnseg.train.demo import DemoConfig, demo_recipe, run_demo
from fcnseg.train.recipe import dumps, load


@pytest.mark.slow  # about a minute and a half on one thread: 120 of the demo's 500 iterations
def test_shortened_demo_learns_and_reports_its_saved_model(tmp_path):
    config = DemoConfig(iterations=120, train_images=480, val_images=40, grid_rows=2)
    result = run_demo(config, out_dir=tmp_path)
    metrics = result.metrics
    # All background would score mean IU ~0.17; the full 500-iteration run reaches ~0.85.
    assert metrics["mean_iu"] >= 0.6
    assert min(metrics["iu"]) > 0.3  # every shape class is found
    assert len(result.losses) == 120
    assert sum(result.losses[-20:]) < 0.5 * sum(result.losses[:20])
    assert (tmp_path / "demo_grid.png").is_file()
    # an ordinary run of the trainer: its files, its recipe, its validation log
    run = tmp_path / "run"
    assert load(run / "recipe.toml") == demo_recipe(config, run)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["mean_iu"] for r in records if r.get("split") == "val"] == [metrics["mean_iu"]]

    model = fcnseg.load(tmp_path / "demo_fcn8s.pt")
    assert fcnseg.metadata_of(model).classes == tuple(SyntheticShapes.classes)
    val = SyntheticShapes(config.val_images, config.sizes, seed=2 * config.seed + 2)
    preprocess = normalizer_for(model)
    matrix = ConfusionMatrix(val.num_classes)
    with torch.inference_mode():
        for image, label in (val[i] for i in range(len(val))):
            matrix.update(model(preprocess(image, label)[0][None]).argmax(1)[0], label)
    recomputed = matrix.compute()
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "acc", "iu"):
        assert recomputed[key] == pytest.approx(metrics[key], rel=1e-6), key


def test_demo_recipe_is_a_recipe_file_and_a_second_demo_replaces_the_first(tmp_path):
    recipe = demo_recipe(DemoConfig(seed=3), tmp_path / "run")
    (tmp_path / "demo.toml").write_text(dumps(recipe))
    assert load(tmp_path / "demo.toml") == recipe
    recipe.check_runnable()  # the synthetic dataset needs no root
    assert (recipe.optimizer, recipe.schedule, recipe.class_weights) == (
        "adamw",
        "onecycle",
        "median_frequency",
    )
    assert make_normalizer(recipe.preprocessing, 3).spec()["type"] == "Normalize"
    config = DemoConfig(iterations=2, batch_size=2, width=1 / 16, sizes=(64,), grid_rows=1)
    config.train_images, config.val_images = 8, 2
    for _ in range(2):  # the second run does not refuse the first run's folder
        result = run_demo(config, out_dir=tmp_path / "out")
        assert len(result.losses) == 2
    last = fcnseg.load(tmp_path / "out" / "run" / "last.pt")
    assert fcnseg.metadata_of(last).dataset == "synthetic"


def test_synthetic_splits_by_name_are_the_demo_data():
    train = open_dataset("synthetic", "", "train", seed=2, train_images=5, sizes="96,128")
    val = open_dataset("synthetic", "", "val", seed="2", val_images=3, sizes="96,128")
    assert (len(train), len(val)) == (5, 3)
    same = SyntheticShapes(3, (96, 128), seed=2 * 2 + 2)
    for i in range(3):
        assert torch.equal(val[i][1], same[i][1]) and val.size_of(i) == same.size_of(i)
    assert not torch.equal(train[0][0][:, :8, :8], val[0][0][:, :8, :8])
    with pytest.raises(DatasetError, match="splits train, val"):
        synthetic_split("test")
    with pytest.raises(DatasetError, match="sizes"):
        synthetic_split("train", sizes="big")


def test_synthetic_items_are_fixed_by_seed():
    a, b = SyntheticShapes(3, seed=5), SyntheticShapes(3, seed=5)
    for i in range(3):
        torch.testing.assert_close(a[i][0], b[i][0])
        assert torch.equal(a[i][1], b[i][1])
    image, label = a[0]
    assert image.shape[1:] == label.shape and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 255
    assert set(label.unique().tolist()) <= set(range(5))
    with pytest.raises(ValueError, match="sizes"):
        SyntheticShapes(3, sizes=(4,))
