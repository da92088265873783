"""The ``fcnseg`` command in-process: demo, eval and predict, their outputs and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import fcnseg
from fcnseg.cli import main
from fcnseg.data import open_dataset
from fcnseg.evaluate.scoring import evaluate
from fcnseg.train.build import make_normalizer
from helpers import FOLDER_CLASSES as CLASSES
from helpers import write_checkpoint, write_folder_dataset


def run(*args: str) -> int:
    return main(["--threads", "1", *map(str, args)])


@pytest.fixture
def files(tmp_path):
    """A tiny checkpoint and a tiny ``folder`` dataset with a ``val`` split."""
    return write_checkpoint(tmp_path / "tiny.pt"), write_folder_dataset(tmp_path / "data")


@pytest.mark.slow  # about 10 s: 3 steps, then scoring the 100 held-out images
def test_demo_writes_figure_model_and_json(tmp_path, capsys):
    out = tmp_path / "demo"
    small = ["--train-images", 40, "--val-images", 10]  # the defaults: 2000 and 100
    assert run("demo", "--iterations", 3, *small, "--out", out, "--json", out / "x.json") == 0
    assert "mean IU" in capsys.readouterr().out
    assert (out / "demo_grid.png").is_file()
    payload = json.loads((out / "x.json").read_text())
    assert payload["config"]["iterations"] == 3 and 0 <= payload["metrics"]["pixel_acc"] <= 1
    assert (payload["config"]["train_images"], payload["config"]["val_images"]) == (40, 10)
    meta = fcnseg.metadata_of(fcnseg.load(out / "demo_fcn8s.pt")).to_dict()
    assert meta["preprocessing"] == make_normalizer("scale", 3).spec()
    assert meta["ignore_index"] == 255
    assert meta["classes"] == payload["classes"]
    # the demo's figures are its run's validation: fcnseg eval gives them again
    seed = ["--option", f"seed={payload['config']['seed']}", "--option", "val_images=10"]
    assert run("eval", "--checkpoint", out / "demo_fcn8s.pt", "--dataset", "synthetic",
               "--split", "val", "--json", out / "eval.json", *seed) == 0  # fmt: skip
    scored = json.loads((out / "eval.json").read_text())
    assert all(scored[k] == payload["metrics"][k] for k in ("pixel_acc", "mean_iu", "fw_iu"))


def test_eval_prints_and_writes_json_and_figure(files, tmp_path, capsys):
    checkpoint, root = files
    path = tmp_path / "results" / "val.json"
    code = run("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--root", root,
               "--split", "val", "--json", path, "--device", "cpu")  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "mean IU" in printed and all(name in printed for name in CLASSES)
    expected = evaluate(fcnseg.load(checkpoint), open_dataset("folder", root, "val")).compute()
    payload = json.loads(path.read_text())
    assert payload["mean_iu"] == pytest.approx(expected["mean_iu"])
    assert payload["per_class"]["sky"]["iu"] == pytest.approx(expected["iu"][2])
    assert payload["images"] == 3 and payload["split"] == "val"
    assert (tmp_path / "results" / "val_confusion.png").is_file()


def test_eval_limit_option_and_figure_path(files, tmp_path, capsys):
    checkpoint, root = files
    figure = tmp_path / "cm.png"
    code = run("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--root", root,
               "--split", "val", "--limit", 1, "--option", "ignore_index=255",
               "--figure", figure)  # fmt: skip
    assert code == 0
    assert "(1 of 3 images)" in capsys.readouterr().out
    assert figure.is_file()


def _eval_args(checkpoint, root, dataset="folder", *extra):
    return ["eval", "--checkpoint", checkpoint, "--dataset", dataset, "--root", root,
            "--split", "val", *extra]  # fmt: skip


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing checkpoint", "checkpoint {tmp}/missing.pt does not exist"),
        ("text file", "{tmp}/notes.pt is not a torch checkpoint"),
        ("foreign file", "{tmp}/foreign.pt is not an fcnseg checkpoint"),
        ("dataset name", "unknown dataset 'nope'; known: camvid"),
        ("dataset root", "--root {tmp}/nowhere: dataset folder not found"),
        ("class count", "{tmp}/two.pt predicts 2 classes but the dataset"),
        ("option syntax", "--option expects key=value, got 'year'"),
        ("unknown option", "dataset 'folder' rejects the options {{'year': '2012'}}"),
        ("train's spelling", "dataset 'folder' rejects the options {{'year': '2012'}}"),
    ],
)
def test_eval_errors_exit_2_with_one_line(files, tmp_path, capsys, case, message):
    checkpoint, root = files
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    args = {
        "missing checkpoint": _eval_args(tmp_path / "missing.pt", root),
        "text file": _eval_args(tmp_path / "notes.pt", root),
        "foreign file": _eval_args(tmp_path / "foreign.pt", root),
        "dataset name": _eval_args(checkpoint, root, "nope"),
        "dataset root": _eval_args(checkpoint, tmp_path / "nowhere"),
        "class count": _eval_args(write_checkpoint(tmp_path / "two.pt", num_classes=2), root),
        "option syntax": _eval_args(checkpoint, root, "folder", "--option", "year"),
        "unknown option": _eval_args(checkpoint, root, "folder", "--option", "year=2012"),
        "train's spelling": _eval_args(checkpoint, root, "folder", "--options", "year=2012"),
    }[case]
    assert run(*args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("fcnseg eval: error: ")
    assert message.format(tmp=tmp_path) in captured.err
    assert captured.err.count("\n") == 1


def test_eval_in_bfloat16_and_the_other_geometry(files, tmp_path, capsys):
    checkpoint, root = files
    dataset = open_dataset("folder", root, "val")
    for extra, model, dtype in [
        (["--precision", "bf16"], fcnseg.load(checkpoint), torch.bfloat16),
        (["--geometry", "fast"], fcnseg.load(checkpoint, geometry="fast"), None),
    ]:
        path = tmp_path / "x.json"
        assert run(*_eval_args(checkpoint, root), "--json", path, *extra) == 0
        assert extra[1] in capsys.readouterr().out
        payload = json.loads(path.read_text())
        expected = evaluate(model, dataset, dtype=dtype).compute()
        assert payload["mean_iu"] == pytest.approx(expected["mean_iu"])
        assert payload["precision"] == (extra[1] if extra[0] == "--precision" else "fp32")
        assert payload["geometry"] == (extra[1] if extra[0] == "--geometry" else "reference")


def test_eval_fp16_on_the_cpu_is_refused(files, capsys):
    assert run(*_eval_args(*files), "--device", "cpu", "--precision", "fp16") == 2
    assert "--precision fp16: precision fp16 needs a CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_eval_device_cuda_without_cuda(files, capsys):
    assert run(*_eval_args(*files), "--device", "cuda") == 2
    assert "--device cuda: device 'cuda' was asked for, but torch sees no CUDA device" in (
        capsys.readouterr().err
    )


def _image(path, size=(11, 13), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "L": 1}[mode]
    array = np.random.default_rng(0).integers(0, 256, (size[0], size[1], channels), np.uint8)
    Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(path)
    return path


def test_predict_writes_label_maps_and_overlays(files, tmp_path, capsys):
    checkpoint, _ = files
    one, grey = _image(tmp_path / "in" / "one.png"), _image(tmp_path / "grey.jpg", (7, 5), "L")
    out = tmp_path / "out"
    code = run("predict", "--checkpoint", checkpoint, tmp_path / "in", grey, "--out", out,
               "--device", "cpu", "--alpha", 0.3)  # fmt: skip
    assert code == 0
    assert "wrote 2 label maps and overlays" in capsys.readouterr().out
    with Image.open(out / "grey.png") as label, Image.open(out / "grey_overlay.png") as blend:
        assert label.mode == "P" and label.size == (5, 7)
        assert blend.size[0] > 5 and blend.size[1] >= 7  # the overlay, its legend on the right
    assert (out / "one.png").is_file() and (out / "one_overlay.png").is_file()
    assert one.is_file()


def test_predict_in_bfloat16_and_the_fast_geometry(files, tmp_path, capsys):
    checkpoint, _ = files
    _image(tmp_path / "in" / "odd.png", (17, 9))
    out = tmp_path / "out"
    code = run("predict", "--checkpoint", checkpoint, tmp_path / "in", "--out", out,
               "--device", "cpu", "--precision", "bf16", "--geometry", "fast")  # fmt: skip
    assert code == 0
    with Image.open(out / "odd.png") as label:
        assert label.mode == "P" and label.size == (9, 17)


def test_predict_reports_unreadable_images_and_exits_1(files, tmp_path, capsys):
    checkpoint, _ = files
    good = _image(tmp_path / "good.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code = run("predict", "--checkpoint", checkpoint, broken, good, "--out", tmp_path / "out")
    assert code == 1
    err = capsys.readouterr().err
    assert f"fcnseg predict: error: cannot read image {broken}" in err
    assert "1 of 2 images failed" in err
    assert (tmp_path / "out" / "good.png").is_file()


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing checkpoint", "checkpoint {tmp}/missing.pt does not exist"),
        ("missing input", "input {tmp}/nothing.png does not exist"),
        ("clash", "would both write {tmp}/out/x.png"),
    ],
)
def test_predict_errors_exit_2(files, tmp_path, capsys, case, message):
    checkpoint, _ = files
    first, second = _image(tmp_path / "a" / "x.png"), _image(tmp_path / "b" / "x.jpg")
    inputs = {
        "missing checkpoint": [first],
        "missing input": [first, tmp_path / "nothing.png"],
        "clash": [first, second],
    }[case]
    if case == "missing checkpoint":
        checkpoint = tmp_path / "missing.pt"
    assert run("predict", "--checkpoint", checkpoint, *inputs, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("fcnseg predict: error: ") and err.count("\n") == 1
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "out").exists()


def test_eval_fast_layers_and_the_old_precision_spelling(files, tmp_path, capsys):
    checkpoint, root = files
    scores = {}
    for name, extra in {"plain": [], "fast": ["--fast"], "none": ["--precision", "none"]}.items():
        path = tmp_path / f"{name}.json"
        assert run(*_eval_args(checkpoint, root), "--json", path, *extra) == 0
        scores[name] = json.loads(path.read_text())
    assert scores["fast"]["fast"] and not scores["plain"]["fast"]
    assert scores["none"]["precision"] == scores["plain"]["precision"] == "fp32"
    for key in ("pixel_acc", "mean_iu"):
        assert scores["fast"][key] == pytest.approx(scores["plain"][key], abs=1e-9)
        assert scores["none"][key] == scores["plain"][key]
    assert "fast layers" in capsys.readouterr().out


def test_eval_applies_the_checkpoints_test_time_augmentation_unless_told_not_to(tmp_path, capsys):
    from fcnseg.inference.crf import CRF
    from fcnseg.inference.tta import NO_AUGMENTATION, Augmentation

    recorded = {"flip": True, "scales": [0.5, 1.0]}
    checkpoint = write_checkpoint(tmp_path / "tta.pt", test_time_augmentation=recorded)
    root = write_folder_dataset(tmp_path / "data")
    model, dataset = fcnseg.load(checkpoint), open_dataset("folder", root, "val")
    runs = {
        "recorded": ([], Augmentation(flip=True, scales=(0.5, 1.0))),
        "none": (["--tta", "none"], NO_AUGMENTATION),
        "none, scales": (["--tta", "none", "--scales", "1", "2"], Augmentation(scales=(1, 2))),
        "crf": (["--crf"], Augmentation(flip=True, scales=(0.5, 1.0), crf=CRF())),
        "none, crf": (["--tta", "none", "--crf"], Augmentation(crf=CRF())),
    }
    for name, (flags, augmentation) in runs.items():
        path = tmp_path / f"{name}.json"
        code = run("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--root", root,
                   "--split", "val", "--json", path, *flags)  # fmt: skip
        assert code == 0
        assert f"test-time augmentation: {augmentation}" in capsys.readouterr().out
        payload = json.loads(path.read_text())
        assert payload["test_time_augmentation"] == augmentation.to_dict()
        expected = evaluate(model, dataset, augmentation=augmentation).compute()
        assert payload["mean_iu"] == pytest.approx(expected["mean_iu"]), name
    code = run("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--root", root,
               "--split", "val", "--scales", "0")  # fmt: skip
    assert code == 2
    assert "--scales 0.0: scales must be finite numbers > 0" in capsys.readouterr().err
