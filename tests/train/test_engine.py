"""The training engine on a tiny on-disk dataset: loss, run files, NaN stop, init, weights, CLI.

Nets are FCN-8s at width 1/16 on 24 x 24 images (three classes: two coloured squares on a
dark background), on one thread: a step takes tens of milliseconds.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

import fcnseg
from fcnseg.checkpoint import read
from fcnseg.data import open_dataset
from fcnseg.data.class_weights import median_frequency_weights
from fcnseg.models import matmul_conv
from fcnseg.train import (
    ResumableBatchSampler,
    TrainingDiverged,
    copy_matching,
    initialize,
    lr_factor,
    train,
)
from fcnseg.train import trainer as train_module
from fcnseg.train.build import make_model
from fcnseg.train.recipe import Recipe, RecipeError, dumps, load
from helpers import TINY_CLASSES as CLASSES
from helpers import (
    TorchvisionStyleVGG16,
    losses,
    randomize,
    run_cli,
    tiny_recipe,
    write_tiny_dataset,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def test_training_lowers_the_loss_and_writes_the_run(data, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(data, out, iterations=16, val_every=8, log_every=4)
    result = train(recipe)

    assert result.iteration == 16 and result.classes == CLASSES
    seen = losses(out)
    assert len(seen) == 4 and seen[-1] < 0.8 * seen[0]
    for name in ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "recipe.toml", "run.json"):
        assert (out / name).is_file(), name
    assert load(out / "recipe.toml") == recipe
    start = json.loads((out / "run.json").read_text())["starts"][0]
    assert start["processes"] == 1 and start["total_iterations"] == 16 and "git" in start
    with Image.open(out / "curves.png") as png:
        assert png.format == "PNG"

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r.get("split") == "val"]
    assert [r["iteration"] for r in val] == [8, 16]
    assert all(0 <= r[k] <= 1 for r in val for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"))
    assert result.best_mean_iu == max(r["mean_iu"] for r in val)

    for name in ("last.pt", "best.pt"):
        model = fcnseg.load(out / name)  # a usable model from either file
        assert model.arch == "fcn8s" and model.config.width == 1 / 16
        meta = fcnseg.metadata_of(model)
        assert list(meta.classes) == CLASSES and meta.ignore_index == 255
        assert meta.preprocessing["type"] == "Normalize"
        assert meta.dataset == "folder" and len(meta.palette) == 3
        training = read(out / name)["training"]
        assert training["best_mean_iu"] == result.best_mean_iu
        assert training["optimizer"]["state"] and training["recipe"]["iterations"] == 16
    assert read(out / "last.pt")["training"]["iteration"] == 16
    assert read(out / "best.pt")["training"]["iteration"] == result.best_iteration


def test_a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(data, tmp_path, monkeypatch):
    calls = []
    real_loss = train_module.segmentation_loss

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * math.nan if len(calls) == 4 else loss

    monkeypatch.setattr(train_module, "segmentation_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"nan at iteration 4.*last\.pt \(iteration 2\)"):
        train(tiny_recipe(data, out, iterations=10, checkpoint_every=2, val_split=""))
    training = read(out / "last.pt")["training"]
    assert training["iteration"] == 2
    model = fcnseg.load(out / "last.pt")
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert len(losses(out)) == 3 and all(math.isfinite(v) for v in losses(out))


def test_an_infinite_learning_rate_diverges(data, tmp_path):
    with pytest.raises(TrainingDiverged, match="at iteration"):
        train(tiny_recipe(data, tmp_path / "run", optimizer="sgd", lr=1e30, iterations=20))


def test_staged_init_copies_every_matching_entry(data, tmp_path):
    coarse = fcnseg.fcn32s(num_classes=3, width=1 / 16, batch_norm=True)
    with torch.no_grad():
        for parameter in coarse.parameters():
            parameter.normal_()
    path = fcnseg.save(coarse, tmp_path / "fcn32s.pt")
    fine = fcnseg.fcn16s(num_classes=3, width=1 / 16, batch_norm=True)
    report = initialize(fine, str(path))

    assert report.kind == "checkpoint" and not report.mismatched
    assert "upscore.weight" in report.unused  # FCN-32s' 32x upsampling has no FCN-16s twin
    assert {"score_pool4.weight", "upscore2.weight", "upscore16.weight"} <= set(report.untouched)
    theirs, ours = coarse.state_dict(), fine.state_dict()
    assert "backbone.conv1_1.weight" in report.copied and "score_fr.weight" in report.copied
    for name in report.copied:
        assert torch.equal(ours[name], theirs[name]), name
    assert not fine.score_pool4.weight.any()  # zero: FCN-16s starts as FCN-32s

    wider = fcnseg.fcn16s(num_classes=5, width=1 / 16, batch_norm=True)
    mismatched = {name for name, _, _ in copy_matching(wider, theirs).mismatched}
    assert mismatched == {"score_fr.weight", "score_fr.bias"}

    out = tmp_path / "run"
    result = train(tiny_recipe(data, out, net="fcn16s", init=str(path), iterations=1))
    assert result.init.kind == "checkpoint" and "score_fr.weight" in result.init.copied
    assert "init: checkpoint" in json.loads((out / "run.json").read_text())["starts"][0]["init"]


def test_vgg16_init_transplants_the_backbone(tmp_path):
    classifier = randomize(TorchvisionStyleVGG16())  # width 1/16, fc 256
    path = tmp_path / "vgg16.pth"
    torch.save(classifier.state_dict(), path)
    model = fcnseg.fcn8s(num_classes=3, width=1 / 16)
    report = initialize(model, str(path))
    assert report.kind == "vgg16" and "backbone.conv1_1.weight" in report.copied
    assert torch.equal(model.backbone.conv1_1.weight, classifier.features[0].weight)
    assert "score_fr.weight" in report.untouched
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        initialize(model, str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("kind", ["median_frequency", "sqrt_median_frequency"])
def test_median_frequency_class_weights_are_computed_on_the_train_split(data, tmp_path, kind):
    out = tmp_path / "run"
    train(tiny_recipe(data, out, iterations=1, class_weights=kind, val_split=""))
    assert not (out / "best.pt").exists()  # no validation, no best
    stored = read(out / "last.pt")["training"]["class_weights"]
    split = open_dataset("folder", data, "train")
    expected = median_frequency_weights((label for _, label in split), 3, 255)
    if kind == "sqrt_median_frequency":
        expected = expected.sqrt()
    assert torch.equal(stored, expected) and stored[0] < stored[1]


def test_schedules_are_pure_functions_of_the_iteration():
    total = 40
    recipe = Recipe(lr=0.1, iterations=total)
    assert lr_factor(recipe, 17, total) == 1.0
    poly = Recipe(schedule="poly", poly_power=0.9, iterations=total)
    assert lr_factor(poly, 10, total) == pytest.approx(0.75**0.9)
    step = Recipe(schedule="step", step_size=15, step_gamma=0.5, iterations=total)
    assert [lr_factor(step, i, total) for i in (0, 14, 15, 39)] == [1, 1, 0.5, 0.25]

    onecycle = Recipe(schedule="onecycle", pct_start=0.25, iterations=total)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=total, pct_start=0.25, cycle_momentum=False
    )
    for iteration in range(total):
        expected = optimizer.param_groups[0]["lr"]
        assert 0.1 * lr_factor(onecycle, iteration, total) == pytest.approx(expected, rel=1e-9)
        optimizer.step()
        reference.step()


def test_batches_are_a_pure_function_of_seed_and_iteration():
    sampler = ResumableBatchSampler(10, 3, seed=7, stop=12)
    assert sampler.batches_per_epoch == 3  # the incomplete fourth batch is dropped
    batches = list(sampler)
    assert [sampler.batch(i) for i in range(12)] == batches
    assert list(ResumableBatchSampler(10, 3, seed=7, start=5, stop=9)) == batches[5:9]
    assert batches[:3] != batches[3:6]  # each epoch its own order
    assert batches != list(ResumableBatchSampler(10, 3, seed=8, stop=12))

    shards = [ResumableBatchSampler(10, 2, seed=7, rank=r, world_size=2).epoch(0) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 2
    indices = [index for shard in shards for batch in shard for index, _ in batch]
    assert len(set(indices)) == len(indices) == 8  # disjoint shards


def test_bf16_autocast_and_channels_last_run_on_the_cpu(data, tmp_path, caplog):
    result = train(tiny_recipe(data, tmp_path / "a", amp="bf16", channels_last=True, val_images=1))
    assert math.isfinite(result.final_loss) and result.metrics is not None
    with caplog.at_level(logging.WARNING, logger="fcnseg.train.trainer"):
        result = train(tiny_recipe(data, tmp_path / "b", amp="fp16", iterations=1, val_split=""))
    assert math.isfinite(result.final_loss) and "fp16' needs CUDA" in caplog.text


def test_matmul_convolutions_train_the_same_run_up_to_rounding(data, tmp_path, monkeypatch):
    # at width 1/16 fc6 holds 401 k weights: lower the threshold so that it (alone) is swapped
    monkeypatch.setattr(matmul_conv, "MATMUL_MIN_WEIGHTS", 32 * 256 * 7 * 7)
    calls = []
    plain_forward = matmul_conv.MatmulConv2d._conv_forward

    def counted(self, *args):
        calls.append(self.weight.shape)
        return plain_forward(self, *args)

    monkeypatch.setattr(matmul_conv.MatmulConv2d, "_conv_forward", counted)
    kwargs = dict(
        iterations=6, val_every=6, channels_last=True, val_images=2, optimizer="sgd", lr=1e-3
    )
    plain = train(tiny_recipe(data, tmp_path / "plain", **kwargs))
    assert not calls
    fast = train(tiny_recipe(data, tmp_path / "fast", matmul_convolutions=True, **kwargs))
    # fc6 (7 x 7) in every training step and in validation, nothing else
    assert calls and {tuple(shape[-2:]) for shape in calls} == {(7, 7)}
    # The first steps agree to float rounding; later ones drift apart as little as the same
    # run does in another memory layout (contiguous against channels-last: 0.3 % by step 6,
    # the BatchNorms of 2 x 2 maps amplifying rounding), and no more.
    fast_losses, plain_losses = losses(tmp_path / "fast"), losses(tmp_path / "plain")
    assert fast_losses[:2] == pytest.approx(plain_losses[:2], rel=1e-5)
    assert fast_losses == pytest.approx(plain_losses, rel=1e-2)
    assert fast.best_mean_iu == pytest.approx(plain.best_mean_iu, abs=0.05)
    # the checkpoint holds the same names; the loaded model is the plain net
    model = fcnseg.load(tmp_path / "fast" / "last.pt")
    assert type(model.backbone.fc6) is torch.nn.Conv2d
    assert list(model.state_dict()) == list(
        fcnseg.load(tmp_path / "plain" / "last.pt").state_dict()
    )


def test_settings_a_net_does_not_take_are_refused():
    make_model(Recipe(net="fcn8s_resnet18", width=0.125), 3, 3)  # defaults pass
    with pytest.raises(RecipeError, match="'batch_norm'"):
        make_model(Recipe(net="fcn8s_resnet18", batch_norm=True), 3, 3)
    with pytest.raises(RecipeError, match="'instance_norm_stages'"):
        make_model(Recipe(net="fcn8s_resnet18", instance_norm_stages=2), 3, 3)


def test_the_recipes_instance_norm_stages_reach_the_vgg16_net():
    recipe = Recipe(net="fcn8s", width=0.0625, batch_norm=True, instance_norm_stages=2)
    net = make_model(recipe, 3, 3)
    assert type(net.backbone.conv2_2_bn).__name__ == "InstanceBatchNorm"
    assert type(net.backbone.conv3_1_bn).__name__ == "BatchNorm2d"
    with pytest.raises(RecipeError, match="needs batch_norm"):
        make_model(Recipe(net="fcn8s", width=0.0625, instance_norm_stages=2), 3, 3)


def test_cli_trains_resumes_and_refuses_to_overwrite(data, tmp_path, capsys):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(dumps(tiny_recipe(data, tmp_path / "unused", val_split="")))
    out = tmp_path / "run"
    assert run_cli("--recipe", recipe, "--out", out, "--iterations", 2, "--no-batch-norm") == 0
    printed = capsys.readouterr().out
    assert "trained to iteration 2" in printed
    # no validation, so no best.pt, and the last line names only what was written
    assert "last.pt, metrics.jsonl" in printed and not (out / "best.pt").exists()
    assert load(out / "recipe.toml").batch_norm is False  # the flag overrode the recipe

    assert run_cli("--recipe", recipe, "--out", out, "--iterations", 2) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert run_cli("--out", out, "--resume", "--iterations", 3) == 0  # recipe from the run
    assert read(out / "last.pt")["training"]["iteration"] == 3
    assert run_cli("--out", out, "--resume", "--momentum", 0.5) == 2  # lr may change; this not
    assert "momentum: 0.9 -> 0.5" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--root", "{tmp}/nowhere"], "nowhere"),
        (["--lr", "fast"], "'lr' cannot be read as float"),
        (["--net", "fcn1s"], "'net' must be one of fcn32s"),
        (["--out", ""], "set 'out'"),
        (["--init", "{tmp}/vgg.pth"], "vgg.pth"),
    ],
)
def test_cli_errors_name_the_bad_argument(data, tmp_path, capsys, args, message):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(dumps(tiny_recipe(data, tmp_path / "run")))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert run_cli("--recipe", recipe, *args) == 2
    assert message in capsys.readouterr().err


def test_cli_names_a_bad_recipe_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('net = "fcn8s"\nlearning_rate = 0.1\n')
    assert run_cli("--recipe", bad) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "'learning_rate'" in err and "valid keys" in err
    assert run_cli("--recipe", tmp_path / "absent.toml") == 2
    assert "absent.toml does not exist" in capsys.readouterr().err


def test_batches_by_size_hold_one_size_and_stay_a_function_of_the_iteration():
    sizes = [(24, 24), (24, 32), (32, 24)] * 5 + [(40, 40)]  # 5, 5, 5 and 1 of each
    one = ResumableBatchSampler(len(sizes), 2, seed=3, sizes=sizes)
    assert one.batches_per_epoch == 6  # 2 full pairs of each of three sizes; (40, 40) never
    for epoch in range(3):
        batches = one.epoch(epoch)
        assert len(batches) == 6 and all(len(b) == 2 for b in batches)
        assert all(len({sizes[i] for i, _ in b}) == 1 for b in batches)
    again = ResumableBatchSampler(len(sizes), 2, seed=3, sizes=sizes)
    assert [again.batch(t) for t in (13, 2, 7)] == [one.batch(t) for t in (13, 2, 7)]
    assert one.epoch(0) != one.epoch(1)
    shards = [ResumableBatchSampler(len(sizes), 2, 3, r, 2, sizes=sizes).epoch(0) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 3
    keys = [key for shard in shards for batch in shard for key in batch]
    assert len(set(keys)) == 12 and set(keys) <= {k for b in one.epoch(0) for k in b}
    with pytest.raises(ValueError, match="0 full batches of 6"):
        ResumableBatchSampler(len(sizes), 6, seed=3, sizes=sizes)


def test_batch_by_size_trains_mixed_sizes_without_padding(tmp_path, monkeypatch):
    seen = []
    real = train_module.Trainer._step

    def step(self, model, images, labels):
        seen.append(labels)
        return real(self, model, images, labels)

    monkeypatch.setattr(train_module.Trainer, "_step", step)
    options = {"train_images": 12, "val_images": 2, "sizes": "24,40"}
    recipe = tiny_recipe("", tmp_path / "run", dataset="synthetic", options=options)
    result = train(recipe.replace(batch_by_size=True, iterations=6))
    assert result.iteration == 6 and result.metrics is not None
    assert all(not (labels == 255).any() for labels in seen)  # synthetic labels: no ignore
    assert len({tuple(labels.shape[1:]) for labels in seen}) > 1  # mixed sizes, unpadded
    seen.clear()
    train(recipe.replace(out=str(tmp_path / "padded"), iterations=6, val_split=""))
    assert any((labels == 255).any() for labels in seen)  # without it: padded to a batch's max


@pytest.mark.parametrize("term", ["lovasz_weight", "jaccard_weight"])
def test_an_iu_term_adds_to_the_logged_loss(data, tmp_path, term):
    """The first step's logged loss: cross-entropy plus the weight x the Lovasz-softmax or
    soft-Jaccard loss of the same scores (same seed, so the same weights and batch)."""
    plain = train(tiny_recipe(data, tmp_path / "a", iterations=1, val_split="", log_every=1))
    mixed = train(
        tiny_recipe(data, tmp_path / "b", iterations=1, val_split="", log_every=1, **{term: 0.5})
    )
    # both lie in [0, 1]: the logged loss grows by at most the weight
    assert plain.final_loss < mixed.final_loss <= plain.final_loss + 0.5


def test_the_run_takes_the_recipes_ohem_loss(data, tmp_path):
    """The trainer's loss is the cross-entropy of the hardest ``ohem_fraction`` of the pixels,
    weighted by the recipe's class weights (the zero-initialised score layer makes every pixel's
    first loss alike, so the loss is checked on scores of its own)."""
    from fcnseg.train.distributed import Processes
    from fcnseg.train.losses import segmentation_loss
    from fcnseg.train.trainer import Trainer

    recipe = tiny_recipe(data, tmp_path / "a", class_weights="median_frequency", ohem_fraction=0.25)
    trainer = Trainer(recipe, Processes())
    scores = torch.randn(2, len(CLASSES), 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, len(CLASSES), (2, 8, 8), generator=torch.Generator().manual_seed(1))
    expected = segmentation_loss(scores, labels, 255, trainer.weights, ohem_fraction=0.25)
    assert trainer._loss(scores, labels) == expected
    assert expected > segmentation_loss(scores, labels, 255, trainer.weights)


def test_the_run_takes_the_recipes_label_smoothing(data, tmp_path):
    from fcnseg.train.distributed import Processes
    from fcnseg.train.losses import segmentation_loss
    from fcnseg.train.trainer import Trainer

    recipe = tiny_recipe(data, tmp_path / "a", class_weights="median_frequency",
                         label_smoothing=0.1)  # fmt: skip
    trainer = Trainer(recipe, Processes())
    scores = torch.randn(2, len(CLASSES), 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, len(CLASSES), (2, 8, 8), generator=torch.Generator().manual_seed(1))
    expected = segmentation_loss(scores, labels, 255, trainer.weights, label_smoothing=0.1)
    assert trainer._loss(scores, labels) == expected
    assert expected != segmentation_loss(scores, labels, 255, trainer.weights)


def test_copy_paste_cutmix_and_crop_redraws_train_deterministically_and_bad_names_fail_first(
    data, tmp_path
):
    recipe = tiny_recipe(data, tmp_path / "a", iterations=2, val_split="", cache_samples=True,
                         paste_classes=[CLASSES[1]], paste_probability=1.0)  # fmt: skip
    first = train(recipe)
    again = train(recipe.replace(out=str(tmp_path / "b")))
    plain = train(recipe.replace(out=str(tmp_path / "c"), paste_classes=[]))
    assert first.final_loss == again.final_loss != plain.final_loss
    cutmix = recipe.replace(out=str(tmp_path / "e"), paste_classes=[], cutmix_probability=1.0)
    mixed = train(cutmix)
    assert mixed.final_loss == train(cutmix.replace(out=str(tmp_path / "f"))).final_loss
    assert mixed.final_loss != plain.final_loss
    crops = recipe.replace(out=str(tmp_path / "g"), paste_classes=[], crop_size=[12, 12])
    cropped = train(crops).final_loss
    shared = crops.replace(out=str(tmp_path / "h"), crop_max_class_share=0.4)
    redrawn = train(shared).final_loss
    assert redrawn == train(shared.replace(out=str(tmp_path / "i"))).final_loss != cropped
    with pytest.raises(RecipeError, match=f"names 'nope', not classes .*: {', '.join(CLASSES)}"):
        train(recipe.replace(out=str(tmp_path / "d"), paste_classes=["nope"]))
    assert not (tmp_path / "d" / "last.pt").exists()


def test_the_recipes_test_time_augmentation_is_recorded_in_its_checkpoints(data, tmp_path):
    from fcnseg.inference.tta import Augmentation, augmentation_of

    recipe = tiny_recipe(data, tmp_path / "run", iterations=1, test_flip=True,
                         test_scales=[0.75, 1.0, 1.25])  # fmt: skip
    train(recipe)
    for name in ("last.pt", "best.pt"):
        model = fcnseg.load(tmp_path / "run" / name)
        assert augmentation_of(model) == Augmentation(flip=True, scales=(0.75, 1.0, 1.25))
    train(tiny_recipe(data, tmp_path / "plain", iterations=1))  # none asked: none recorded
    plain = fcnseg.metadata_of(fcnseg.load(tmp_path / "plain" / "last.pt"))
    assert plain.test_time_augmentation is None
    with pytest.raises(RecipeError, match="test_scales"):
        tiny_recipe(data, tmp_path / "bad", test_scales=[1.0, 0.0])
