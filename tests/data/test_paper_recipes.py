"""Every shipped recipe reproduces one experiment of the paper: it loads and resolves, holds the
reference solver's numbers, names the paper's figure and the commands that run it, and starts:
``fcnseg train`` then ``fcnseg eval`` on a fixture in its dataset's real on-disk layout, with
staged recipes initialised from the runs before them exactly as their ``init`` says.

The runs use tiny widths (VGG16 x 1/16) and two iterations on 16 x 20 images, so each takes
about a second; the recipes' own paths (``weights/...``, ``runs/...``) resolve inside tmp_path.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import datafixtures
import pytest
import torch

import fcnseg
from fcnseg.checkpoint import read
from fcnseg.cli import main
from fcnseg.data import VOC, DatasetError, NYUDv2, PascalContext, SIFTFlow
from fcnseg.models import MODELS, create_model
from fcnseg.models.surgery import TransplantError
from fcnseg.train.build import initialize
from fcnseg.train.recipe import Recipe, RecipeError, load
from helpers import TorchvisionStyleVGG16, randomize

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

# name: (net, lr, iterations, validate every, (dataset, train split, val split), init)
# from the reference solver.prototxt / solve.py of fcn.berkeleyvision.org (NYUDv2 and SIFT
# Flow step 50 x 2,000 iterations; PASCAL-Context 50 x 8,000; VOC 25 x 4,000).
VGG = "imagenet"  # fcnseg.hub's ImageNet VGG16 (the Caffe one, for caffe preprocessing)
# What the runs below give instead (no downloads in tests): a tiny VGG16 in torchvision layout.
TINY_VGG = "weights/vgg16_tiny.pth"
REFERENCE = {
    "nyud-fcn32s-color": ("fcn32s", 1e-10, 100000, 2000, ("nyud", "trainval", "test"), VGG),
    "nyud-fcn32s-hha": ("fcn32s", 1e-10, 100000, 2000, ("nyud", "trainval", "test"), VGG),
    "nyud-fcn32s-color-d": ("fcn32s", 1e-10, 100000, 2000, ("nyud", "trainval", "test"), VGG),
    "nyud-fcn32s-color-hha": (
        "fcn_latefusion",
        1e-12,
        100000,
        2000,
        ("nyud", "trainval", "test"),
        "none",
    ),
    "nyud-fcn16s-color-hha": (
        "fcn_latefusion",
        1e-12,
        100000,
        2000,
        ("nyud", "trainval", "test"),
        "runs/nyud-fcn32s-color-hha/best.pt",
    ),
    "siftflow-fcn32s": (
        "fcn32s_two_headed",
        1e-10,
        100000,
        2000,
        ("siftflow", "trainval", "test"),
        VGG,
    ),
    "siftflow-fcn16s": (
        "fcn16s_two_headed",
        1e-12,
        100000,
        2000,
        ("siftflow", "trainval", "test"),
        "runs/siftflow-fcn32s/last.pt",
    ),
    "siftflow-fcn8s": (
        "fcn8s_two_headed",
        1e-12,
        100000,
        2000,
        ("siftflow", "trainval", "test"),
        "runs/siftflow-fcn16s/last.pt",
    ),
    "pascalcontext-fcn32s": ("fcn32s", 1e-10, 400000, 8000, ("context", "train", "val"), VGG),
    "pascalcontext-fcn16s": (
        "fcn16s",
        1e-12,
        400000,
        8000,
        ("context", "train", "val"),
        "runs/pascalcontext-fcn32s/last.pt",
    ),
    "pascalcontext-fcn8s": (
        "fcn8s",
        1e-14,
        400000,
        8000,
        ("context", "train", "val"),
        "runs/pascalcontext-fcn16s/last.pt",
    ),
    "voc-fcn32s": ("fcn32s", 1e-10, 100000, 4000, ("sbd", "train", "seg11valid"), VGG),
    "voc-fcn16s": (
        "fcn16s",
        1e-12,
        100000,
        4000,
        ("sbd", "train", "seg11valid"),
        "runs/voc-fcn32s/last.pt",
    ),
    "voc-fcn8s": (
        "fcn8s",
        1e-14,
        100000,
        4000,
        ("sbd", "train", "seg11valid"),
        "runs/voc-fcn16s/last.pt",
    ),
    "voc-fcn8s-atonce": ("fcn8s_atonce", 1e-10, 300000, 4000, ("sbd", "train", "seg11valid"), VGG),
}
# The paper's figures each recipe's comment must name (pixel acc., mean acc., mean IU, f.w. IU
# [, geometric acc.]): Table 4 (NYUDv2), Table 5 (SIFT Flow), Table 6 (PASCAL-Context) of
# arXiv 1411.4038; VOC: the reference models' seg11valid mean IU.
FIGURES = {
    "nyud-fcn32s-color": ("60.0", "42.2", "29.2", "43.9"),
    "nyud-fcn32s-hha": ("57.1", "35.2", "24.2", "40.4"),
    "nyud-fcn32s-color-d": ("61.5", "42.4", "30.5", "45.5"),
    "nyud-fcn32s-color-hha": ("64.3", "44.9", "32.8", "48.0"),
    "nyud-fcn16s-color-hha": ("65.4", "46.1", "34.0", "49.5"),
    "siftflow-fcn32s": ("85.2", "51.7", "39.5", "76.1", "94.3"),
    "siftflow-fcn16s": ("85.2", "51.7", "39.5", "76.1", "94.3"),
    "siftflow-fcn8s": ("85.2", "51.7", "39.5", "76.1", "94.3"),
    "pascalcontext-fcn32s": ("63.8", "42.7", "31.8", "48.3"),
    "pascalcontext-fcn16s": ("65.7", "46.2", "34.8", "50.7"),
    "pascalcontext-fcn8s": ("65.9", "46.5", "35.1", "51.0"),
    "voc-fcn32s": ("63.6",),
    "voc-fcn16s": ("65.0",),
    "voc-fcn8s": ("65.5",),
    "voc-fcn8s-atonce": ("65.4",),
}


def test_the_recipes_folder_holds_every_experiment():
    shipped = {path.stem for path in RECIPES.glob("*.toml")}
    assert shipped == set(REFERENCE) | {"camvid-cpu"}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_recipe_resolves_to_the_reference_solver(name):
    recipe = load(RECIPES / f"{name}.toml")
    net, lr, iterations, val_every, (dataset, train_split, val_split), init = REFERENCE[name]
    assert recipe.net == net and recipe.net in MODELS
    assert (recipe.lr, recipe.iterations, recipe.val_every) == (lr, iterations, val_every)
    assert (recipe.dataset, recipe.train_split) == (dataset, train_split)
    assert recipe.val_split == val_split and recipe.init == init
    # the reference's "heavy" solver: whole images, momentum 0.99, unnormalised loss, biases
    # at 2x lr without decay, fixed bilinear upsampling, a fixed learning rate
    assert (recipe.batch_size, recipe.momentum, recipe.weight_decay) == (1, 0.99, 5e-4)
    assert (recipe.optimizer, recipe.loss, recipe.schedule) == ("sgd", "sum", "constant")
    assert (recipe.bias_lr_mult, recipe.bias_decay) == (2.0, False)
    assert not recipe.learnable_upsampling and recipe.dropout == 0.5 and recipe.width == 1.0
    assert recipe.best_metric == "mean_iu" and recipe.out == f"runs/{name}"
    recipe.check_runnable()

    text = (RECIPES / f"{name}.toml").read_text()
    comment = " ".join(line[1:].strip() for line in text.splitlines() if line.startswith("#"))
    assert f"fcnseg train --recipe recipes/{name}.toml" in comment
    for figure in FIGURES[name]:
        assert re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", comment), figure
    if init.startswith("runs/"):  # staged: the comment says which run comes first
        assert f"recipes/{init.split('/')[1]}.toml" in comment
    if init == VGG:  # ImageNet initialisation is part of the command
        assert "ImageNet" in comment


def test_reference_input_means_and_inputs():
    def read_recipe(name: str) -> Recipe:
        return load(RECIPES / f"{name}.toml")

    nyud_bgr, hha = [116.190, 97.203, 92.318], [132.431, 94.076, 118.477]
    assert read_recipe("nyud-fcn32s-color").mean == nyud_bgr
    hha_recipe = read_recipe("nyud-fcn32s-hha")
    assert (hha_recipe.preprocessing, hha_recipe.mean) == ("mean", hha)
    early = read_recipe("nyud-fcn32s-color-d")
    assert early.options == {"modality": "rgbd", "depth": "log"}
    assert (early.mean, early.extra_channels) == ([*nyud_bgr, 7.844], "mean")
    late = read_recipe("nyud-fcn32s-color-hha")
    assert late.options == {"modality": "rgbhha"} and late.mean == nyud_bgr + hha
    assert late.init_branches == {
        "rgb": "runs/nyud-fcn32s-color/best.pt",
        "hha": "runs/nyud-fcn32s-hha/best.pt",
    }
    assert read_recipe("nyud-fcn16s-color-hha").net_options == {"branch": "fcn16s"}
    for n in (32, 16, 8):
        sift = read_recipe(f"siftflow-fcn{n}s")
        assert sift.options == {"target": "both"} and sift.mean == [114.578, 115.294, 108.353]
        context = read_recipe(f"pascalcontext-fcn{n}s")
        assert context.mean == [] and context.preprocessing == "caffe"  # the ILSVRC mean


# --------------------------------------------------------------------------- runs on fixtures


def _write_vgg16(path: Path) -> None:
    """A VGG16 in torchvision layout at the test width (1/16: fc6/fc7 have 256 channels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    vgg = TorchvisionStyleVGG16(width=1 / 16, fc=256, classes=1000)
    randomize(vgg)
    torch.save(vgg.state_dict(), path)


def _fixture(dataset: str, tmp_path: Path) -> dict:
    """The recipe overrides that point a dataset's recipes at its fixture, and eval's options."""
    if dataset == "nyud":
        return {"root": datafixtures.build_nyud_root(tmp_path)}
    if dataset == "siftflow":
        return {"root": datafixtures.build_siftflow_root(tmp_path)}
    if dataset == "context":
        root, devkit = datafixtures.build_context_roots(tmp_path)
        return {"root": root, "options": f"voc_root={devkit}"}
    sbd = datafixtures.build_sbd_root(tmp_path)
    devkit = datafixtures.build_voc_devkit(tmp_path)
    return {"root": sbd, "val-root": devkit, "val-options": f"sbd_root={sbd}"}


def _run(name: str, overrides: dict, capsys) -> dict:
    """``fcnseg train`` the recipe for 2 tiny iterations, then ``fcnseg eval`` its best.pt."""
    recipe = load(RECIPES / f"{name}.toml")
    flags = {
        **({"init": TINY_VGG} if recipe.init == VGG else {}),
        "width": 1 / 16,
        "iterations": 2,
        "val-every": 2,
        "log-every": 1,
        "num-workers": 0,
        "device": "cpu",
        **overrides,
    }
    args = ["--threads", "1", "train", "--recipe", str(RECIPES / f"{name}.toml")]
    for key, value in flags.items():
        args += [f"--{key}", str(value)]
    assert main(args) == 0, capsys.readouterr().err
    trained = capsys.readouterr().out
    out = Path(recipe.out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)
    assert read(out / "last.pt")["training"]["iteration"] == 2

    val_dataset = recipe.val_dataset or recipe.dataset
    val_root = overrides.get("val-root", overrides["root"])
    given = recipe.val_options if recipe.val_dataset else recipe.options
    flag = "val-options" if recipe.val_dataset else "options"
    if flag in overrides:  # the fixture's options replace the recipe's, as in training
        given = dict(pair.split("=", 1) for pair in overrides[flag].split(","))
    eval_options = [f"{key}={value}" for key, value in given.items()]
    report = out / "eval.json"
    args = [
        "eval",
        "--checkpoint",
        str(out / "best.pt"),
        "--dataset",
        val_dataset,
        "--root",
        str(val_root),
        "--split",
        recipe.val_split,
        "--device",
        "cpu",
        "--json",
        str(report),
    ]
    for option in eval_options:
        args += ["--option", option]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    payload = json.loads(report.read_text())
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert payload[key] is None or 0 <= payload[key] <= 1, key
    return {"train": trained, "eval": printed, "json": payload, "out": out}


CHAINS = {
    "siftflow": ["siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s"],
    "nyud": [
        "nyud-fcn32s-color",
        "nyud-fcn32s-hha",
        "nyud-fcn32s-color-d",
        "nyud-fcn32s-color-hha",
        "nyud-fcn16s-color-hha",
    ],
    "context": ["pascalcontext-fcn32s", "pascalcontext-fcn16s", "pascalcontext-fcn8s"],
    "voc": ["voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce"],
}


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_each_recipe_trains_then_evaluates_on_its_dataset_layout(
    chain, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # the recipes' relative weights/ and runs/ paths land here
    _write_vgg16(tmp_path / TINY_VGG)
    overrides = _fixture("sbd" if chain == "voc" else chain, tmp_path / "data")
    runs = {name: _run(name, overrides, capsys) for name in CHAINS[chain]}
    for name, run in runs.items():
        init_line = next(line for line in run["train"].splitlines() if line.startswith("init:"))
        init = REFERENCE[name][5]
        if init == VGG:
            assert init_line.startswith(f"init: vgg16 {TINY_VGG}"), init_line
        elif init.startswith("runs/"):
            assert init_line.startswith(f"init: checkpoint {init}"), init_line
        assert "pixel acc" in run["eval"] and "mean IU" in run["eval"]
        if chain == "siftflow":  # both heads, in Table 5's form, in eval's output and JSON
            assert re.search(
                r"pixel acc\. [\d.]+  mean acc\. [\d.-]+  mean IU [\d.]+  f\.w\. "
                r"IU [\d.]+  geom\. acc\. [\d.]+",
                run["eval"],
            ), run["eval"]
            assert "semantic (33 classes)" in run["eval"]
            assert "geometric (3 classes)" in run["eval"]
            geometric = run["json"]["geometric"]
            assert set(geometric["per_class"]) == {"sky", "horizontal", "vertical"}
            assert 0 <= geometric["pixel_acc"] <= 1 and len(run["json"]["per_class"]) == 33
            labelled = run["json"]["mean_iu_labelled"]  # the paper's mean IU (present classes)
            row = next(line for line in run["eval"].splitlines() if line.startswith("pixel acc. "))
            assert f"mean IU {100 * labelled:.1f}" in row, row
            assert "geom. acc." in run["train"]  # the run's final validation too
    if chain == "nyud":
        # the late fusion's two streams start as the colour and the HHA runs' best weights,
        # every tensor of both (nothing kept as built)
        late = next(
            line
            for line in runs["nyud-fcn32s-color-hha"]["train"].splitlines()
            if line.startswith("init:")
        )
        assert late.startswith(
            "init: branches rgb=runs/nyud-fcn32s-color/best.pt, hha=runs/nyud-fcn32s-hha/best.pt"
        ), late
        assert "kept as built" not in late and "shape differs" not in late, late
        # 16s from the 32s fusion: every stream's trunk and score_fr are copied; only the new
        # score_pool4 layers (zero) and the fixed bilinear upsampling are as built
        fused16 = next(
            line
            for line in runs["nyud-fcn16s-color-hha"]["train"].splitlines()
            if line.startswith("init:")
        )
        kept = fused16.split("kept as built: ")[1].split(";")[0].split(", ")
        assert set(kept) == {
            f"{stream}.{name}"
            for stream in ("rgb", "hha")
            for name in ("upscore2.weight", "score_pool4.weight", "score_pool4.bias")
            + ("upscore16.weight",)
        }


# --------------------------------------------------------------------------- named splits


@pytest.mark.parametrize(
    ("build", "open_split", "missing", "expected"),
    [
        (
            datafixtures.build_siftflow_root,
            lambda root: SIFTFlow(root, "test"),
            "test.txt",
            "expected SIFT Flow test split (the FCN reference's test.txt, 200 ids)",
        ),
        (
            datafixtures.build_nyud_root,
            lambda root: NYUDv2(root, "test"),
            "test.txt",
            "expected NYUDv2 test split (654 ids, one per line)",
        ),
        (
            datafixtures.build_nyud_root,
            lambda root: NYUDv2(root, "trainval"),
            "val.txt",
            "expected NYUDv2 val split (414 ids)",
        ),
    ],
)
def test_a_missing_split_file_names_what_was_expected(
    tmp_path, build, open_split, missing, expected
):
    root = build(tmp_path)
    (root / missing).unlink()
    with pytest.raises(DatasetError, match=re.escape(f"{root / missing}: {expected}")):
        open_split(root)


def test_context_and_seg11valid_split_files_name_what_was_expected(tmp_path):
    root, devkit = datafixtures.build_context_roots(tmp_path)
    (devkit / "VOC2010" / "ImageSets" / "Main" / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"val.txt: expected VOC2010 Main val list \(5105 ids"):
        PascalContext(root, devkit, "val")
    voc = datafixtures.build_voc_devkit(tmp_path / "voc")
    sbd = datafixtures.build_sbd_root(tmp_path / "voc")
    (sbd / "train.txt").unlink()
    with pytest.raises(DatasetError, match=r"train.txt: expected SBD train split \(8,498 ids\)"):
        VOC(voc, "seg11valid", sbd_root=sbd)


def test_a_split_file_listing_an_id_twice_is_refused(tmp_path):
    root = datafixtures.build_siftflow_root(tmp_path)
    datafixtures.write_lines(root / "test.txt", ["tall_a1", "coast_arnat59", "tall_a1"])
    with pytest.raises(DatasetError, match=r"test.txt lists ids more than once: tall_a1"):
        SIFTFlow(root, "test")


def test_a_split_of_another_length_than_the_papers_is_read_with_a_warning(tmp_path, caplog):
    sift = datafixtures.build_siftflow_root(tmp_path)
    nyud = datafixtures.build_nyud_root(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fcnseg.data.common"):
        assert len(SIFTFlow(sift, "test")) == 1
        assert len(NYUDv2(nyud, "trainval")) == 3  # train.txt + val.txt
    assert "test.txt lists 1 ids; the paper's SIFT Flow test split has 200" in caplog.text
    assert "the paper's NYUDv2 trainval split has 795" in caplog.text
    caplog.clear()
    datafixtures.write_lines(sift / "test.txt", [f"id{k}" for k in range(200)])
    with caplog.at_level(logging.WARNING, logger="fcnseg.data.common"):
        with pytest.raises(DatasetError, match="200 SIFT Flow image file"):
            SIFTFlow(sift, "test")  # the right length: no warning; then its files are checked
    assert "lists" not in caplog.text


# --------------------------------------------------------------------------- inputs and init


def test_nyud_log_depth_is_the_natural_log_of_the_millimetres(tmp_path):
    root = datafixtures.build_nyud_root(tmp_path)
    millimetres, _ = NYUDv2(root, "test", modality="rgbd")[0]
    logged, _ = NYUDv2(root, "test", modality="rgbd", depth="log")[0]
    assert torch.equal(logged[:3], millimetres[:3])
    assert torch.allclose(logged[3], millimetres[3].log())
    with pytest.raises(DatasetError, match="unknown depth .metres.; valid: mm, log"):
        NYUDv2(root, "test", depth="metres")


def test_early_fusion_init_starts_the_depth_filters_as_the_mean_colour_filter(tmp_path):
    vgg = tmp_path / "vgg.pth"
    _write_vgg16(vgg)
    model = create_model("fcn32s", num_classes=40, in_channels=4, width=1 / 16)
    with pytest.raises(TransplantError, match="extra_channels='mean'"):
        initialize(model, str(vgg))
    report = initialize(model, str(vgg), extra_channels="mean")
    conv1 = model.backbone.conv1_1.weight  # (O, 4, 3, 3)
    source = torch.load(vgg, weights_only=True)["features.0.weight"]
    assert report.kind == "vgg16" and torch.equal(conv1[:, :3], source)
    assert torch.allclose(conv1[:, 3], source.mean(dim=1))


def test_init_branches_fill_each_stream_and_name_an_unknown_one(tmp_path):
    color = create_model("fcn32s", num_classes=40, width=1 / 16)
    hha = create_model("fcn32s", num_classes=40, width=1 / 16)
    for net, name, value in ((color, "color.pt", 1.0), (hha, "hha.pt", 2.0)):
        for parameter in net.parameters():
            parameter.data.fill_(value)
        fcnseg.save(net, tmp_path / name)
    fused = create_model("fcn_latefusion", num_classes=40, width=1 / 16)
    branches = {"rgb": str(tmp_path / "color.pt"), "hha": str(tmp_path / "hha.pt")}
    report = initialize(fused, "none", branches=branches)
    assert report.kind == "branches" and not report.untouched and not report.mismatched
    assert all(bool((p == 1.0).all()) for p in fused.rgb.parameters())
    assert all(bool((p == 2.0).all()) for p in fused.hha.parameters())
    with pytest.raises(RecipeError, match=r"init_branches.depth: the net has no branch 'depth'"):
        initialize(fused, "none", branches={"depth": str(tmp_path / "hha.pt")})
