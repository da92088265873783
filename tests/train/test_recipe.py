"""Recipes: validation errors name the key and the valid values; TOML round trips; the shipped
recipes hold the reference solvers' numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fcnseg.train.recipe import (
    FIELDS,
    Recipe,
    RecipeError,
    dumps,
    field_help,
    from_dict,
    load,
    parse_value,
)

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_defaults_are_valid_and_a_resolved_recipe_reads_back(tmp_path):
    recipe = Recipe(
        root="data/my stuff",
        out='runs/"quoted"',
        options={"sbd_root": "data/sbd", "year": 2011, "strict": True},
        crop_size=[320, 480],
        scale_range=[0.5, 2],
        lr=1e-10,
        iterations=10,
    )
    path = tmp_path / "resolved.toml"
    path.write_text(dumps(recipe))
    assert load(path) == recipe
    assert recipe.scale_range == [0.5, 2.0] and isinstance(recipe.scale_range[1], float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": 0.1}, "unknown key(s) 'learning_rate'; valid keys: dataset, root"),
        ({"net": "fcn1s"}, "key 'net' must be one of fcn32s, fcn16s, fcn8s, fcn8s_atonce, fcn4s"),
        ({"optimizer": "adam"}, "key 'optimizer' must be one of sgd, adamw"),
        ({"dataset": "coco"}, "key 'dataset' must be one of camvid, voc"),
        ({"lr": "fast"}, "key 'lr' must be a number, got 'fast'"),
        ({"lr": 0}, "key 'lr' must be > 0"),
        ({"batch_size": 1.5}, "key 'batch_size' must be an integer"),
        ({"flip": 1}, "key 'flip' must be true or false"),
        ({"dropout": 1.0}, "key 'dropout' must be in [0, 1)"),
        ({"brightness": 1.0}, "key 'brightness' must be in [0, 1)"),
        ({"saturation": -0.5}, "key 'saturation' must be in [0, 1)"),
        ({"hue": 0.6}, "key 'hue' must be in [0, 0.5]"),
        ({"gamma": 4}, "key 'gamma' must be in [0, 3]"),
        ({"paste_classes": "Pole"}, "key 'paste_classes' must be a list of strings"),
        ({"paste_probability": 1.5}, "key 'paste_probability' must be in [0, 1]"),
        ({"cutmix_probability": -0.1}, "key 'cutmix_probability' must be in [0, 1]"),
        ({"momentum": 1.0}, "key 'momentum' must be in [0, 1)"),
        ({"ohem_fraction": 1.5}, "key 'ohem_fraction' must be in [0, 1] (0: every pixel)"),
        ({"label_smoothing": 1.0}, "key 'label_smoothing' must be in [0, 1) (0: none)"),
        ({"scale_range": [0.5, 2.0]}, "key 'crop_size' must be set with scale_range"),
        ({"scale_range": [2.0, 0.5], "crop_size": 8}, "0 < low <= high"),
        ({"crop_size": [1, 2, 3]}, "key 'crop_size' must be [], one int or [height, width]"),
        (
            {"crop_max_class_share": 0, "crop_size": 8},
            "key 'crop_max_class_share' must be in (0, 1]",
        ),
        ({"crop_max_class_share": 0.75}, "key 'crop_max_class_share' needs crop_size"),
        ({"schedule": "step"}, "key 'step_size' must be > 0 for schedule 'step'"),
        ({"options": {"year": [2011]}}, "key 'options.year' must be a string, number"),
        ({"amp": "fp8"}, "key 'amp' must be one of fp32, bf16, fp16"),
        ({"seed": -1}, "key 'seed' must be in 0..2147483647"),
        ({"val_dataset": "coco"}, "key 'val_dataset' must be '' or one of"),
        ({"val_options": {"year": "2011"}}, "key 'val_options' needs val_dataset"),
    ],
)
def test_bad_values_are_named_with_what_is_valid(values, message):
    with pytest.raises(RecipeError, match="^my.toml: .*" + re.escape(message)):
        from_dict(values, source="my.toml")


def test_a_run_needs_root_out_and_one_length():
    Recipe(root="r", out="o", iterations=5).check_runnable()
    Recipe(root="r", out="o", epochs=2).check_runnable()
    with pytest.raises(RecipeError, match=r"set 'root' \(--root\), 'out' \(--out\)"):
        Recipe(iterations=5).check_runnable()
    with pytest.raises(RecipeError, match="exactly one of 'iterations' and 'epochs'"):
        Recipe(root="r", out="o", iterations=5, epochs=2).check_runnable()
    with pytest.raises(RecipeError, match="exactly one of 'iterations' and 'epochs'"):
        Recipe(root="r", out="o").check_runnable()


def test_command_line_text_is_parsed_by_the_field_type():
    assert parse_value("lr", "1e-3") == 1e-3
    assert parse_value("flip", "yes") is True and parse_value("flip", "0") is False
    assert parse_value("scale_range", "0.5, 2") == [0.5, 2.0]
    assert parse_value("crop_size", "") == []
    assert parse_value("paste_classes", "Pole, SignSymbol") == ["Pole", "SignSymbol"]
    assert parse_value("options", "sbd_root=data/sbd,year=2011") == {
        "sbd_root": "data/sbd",
        "year": 2011,
    }
    recipe = Recipe().replace(crop_size="320", lr="0.5", batch_norm=True, net="fcn16s")
    assert recipe.crop_size == [320, 320] and recipe.lr == 0.5 and recipe.net == "fcn16s"
    with pytest.raises(RecipeError, match="key 'iterations' cannot be read as int"):
        parse_value("iterations", "many")
    with pytest.raises(RecipeError, match="unknown key 'speed'"):
        parse_value("speed", "1")


def test_files_are_named_in_errors(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("lr = \n")
    with pytest.raises(RecipeError, match="broken.toml is not valid TOML"):
        load(broken)
    yaml = tmp_path / "recipe.yaml"
    yaml.write_text("lr: 1\n")
    with pytest.raises(RecipeError, match="recipe.yaml: only TOML"):
        load(yaml)
    with pytest.raises(RecipeError, match="absent.toml does not exist"):
        load(tmp_path / "absent.toml")


def test_every_field_has_a_comment():
    assert set(field_help()) == {f.name for f in FIELDS}


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.toml")))
def test_shipped_recipes_load_and_set_their_length(name):
    recipe = load(RECIPES / name)
    assert recipe.root and recipe.out and (recipe.iterations > 0) != (recipe.epochs > 0)


@pytest.mark.parametrize(
    ("name", "net", "lr", "iterations", "init"),
    [
        ("voc-fcn32s.toml", "fcn32s", 1e-10, 100_000, "imagenet"),
        ("voc-fcn16s.toml", "fcn16s", 1e-12, 100_000, "runs/voc-fcn32s/"),
        ("voc-fcn8s.toml", "fcn8s", 1e-14, 100_000, "runs/voc-fcn16s/"),
        ("voc-fcn8s-atonce.toml", "fcn8s_atonce", 1e-10, 300_000, "imagenet"),
    ],
)
def test_voc_recipes_hold_the_reference_solver(name, net, lr, iterations, init):
    recipe = load(RECIPES / name)
    assert (recipe.net, recipe.lr, recipe.iterations) == (net, lr, iterations)
    assert recipe.init.startswith(init)
    assert (recipe.optimizer, recipe.momentum, recipe.weight_decay) == ("sgd", 0.99, 5e-4)
    assert (recipe.batch_size, recipe.loss, recipe.schedule) == (1, "sum", "constant")
    assert (recipe.bias_lr_mult, recipe.bias_decay, recipe.preprocessing) == (2.0, False, "caffe")
    assert (recipe.dataset, recipe.val_dataset, recipe.val_split) == ("sbd", "voc", "seg11valid")
    assert not recipe.learnable_upsampling and recipe.dropout == 0.5
