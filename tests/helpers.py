"""Builders of small fixtures shared by several test modules (test modules import only this).

- a VGG16 laid out as torchvision's, at any width (surgery, fusion and engine tests);
- a tiny FCN-8s checkpoint and a three-image ``folder`` dataset (evaluate, predict, CLI);
- a tiny two-square ``folder`` dataset and a recipe that trains on it (engine, resume, DDP);
- a VGG16 FCN that carries a bright pixel unmoved to one tap, and the check that its output
  peaks at the centre of that tap's cell (alignment tests of the geometry options).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import fcnseg
from fcnseg.data.transforms import Normalize
from fcnseg.models import MODELS
from fcnseg.train.recipe import Recipe

# --------------------------------------------------------------------------- VGG16 weights

STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


class TorchvisionStyleVGG16(nn.Module):
    """VGG16 laid out as torchvision's (``features.N``, ``classifier.0/3/6``), any width."""

    def __init__(self, width=1 / 16, fc=256, classes=10, padding=1):
        super().__init__()
        layers, cin = [], 3
        for convs, channels in STAGES:
            for _ in range(convs):
                cout = max(1, round(channels * width))
                layers += [nn.Conv2d(cin, cout, 3, padding=padding), nn.ReLU()]
                cin = cout
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(cin * 49, fc), nn.ReLU(), nn.Dropout(),
            nn.Linear(fc, fc), nn.ReLU(), nn.Dropout(),
            nn.Linear(fc, classes),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def randomize(module):
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, std=(2 / max(1, p[0].numel())) ** 0.5 if p.ndim > 1 else 0.1)
    return module.eval()


# --------------------------------------------------------------------------- evaluate, predict

FOLDER_CLASSES = ["background", "road", "sky"]
PALETTE = [[0, 0, 0], [128, 64, 128], [70, 130, 180]]
NORMALIZE = Normalize(mean=(128.0,) * 3, std=(64.0,) * 3)
SIZES = [(17, 23), (20, 30), (9, 12)]  # (H, W) of the dataset's images


def tiny_model(num_classes: int = 3, in_channels: int = 3) -> nn.Module:
    """A width-1/16 FCN-8s whose predictions vary over the pixels of a random image.

    FCN score layers start at zero (every pixel predicts class 0), so they get random weights,
    centred over input channels (the ReLU features are all positive, and uncentred weights let
    one class win everywhere), and a larger stride-8 skip. The first of a few draws whose probe
    image shows two classes is kept, so tests of label values are not vacuous.
    """
    model = fcnseg.fcn8s(num_classes=num_classes, in_channels=in_channels, width=1 / 16).eval()
    probe = torch.rand(1, in_channels, 20, 30) * 4 - 2
    scores = [p for name, p in model.named_parameters() if name.startswith("score")]
    with torch.no_grad():
        for _ in range(10):
            for parameter in scores:
                if parameter.ndim == 4:  # weights (K, C, 1, 1); biases stay zero
                    nn.init.normal_(parameter)
                    parameter.sub_(parameter.mean(1, keepdim=True))
            model.score_pool3.weight.mul_(10)
            if model(probe).argmax(1).unique().numel() > 1:
                break
    return model


def write_checkpoint(path: Path, num_classes: int = 3, **meta) -> Path:
    """A tiny model saved with classes, palette and preprocessing unless ``meta`` overrides."""
    meta = {
        "classes": FOLDER_CLASSES[:num_classes],
        "palette": PALETTE[:num_classes],
        "preprocessing": NORMALIZE.spec(),
        "ignore_index": 255,
        **meta,
    }
    return fcnseg.save(tiny_model(num_classes), path, **{k: v for k, v in meta.items() if v})


def direct_argmax(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The label map of ``model`` on ``image`` (3, H, W) 0..255 computed directly: NORMALIZE,
    the net in eval mode, the argmax; what prediction must reproduce."""
    model.eval()
    with torch.no_grad():
        return model(NORMALIZE(image, None)[0][None]).argmax(1)[0]


def write_folder_dataset(root: Path, split: str = "val") -> Path:
    """``root/images/<split>/*.png``, ``root/labels/<split>/*.png`` (values 0..2 and 255) and
    ``root/classes.txt`` with colours; one image per entry of ``SIZES``."""
    rng = np.random.default_rng(0)
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    lines = [f"{name} {r} {g} {b}" for name, (r, g, b) in zip(FOLDER_CLASSES, PALETTE)]
    (root / "classes.txt").write_text("# name R G B\n" + "\n".join(lines) + "\n")
    for index, (h, w) in enumerate(SIZES):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = rng.choice(np.array([0, 1, 2, 255], dtype=np.uint8), (h, w), p=[0.4, 0.3, 0.2, 0.1])
        Image.fromarray(image).save(root / "images" / split / f"im{index}.png")
        Image.fromarray(label, mode="L").save(root / "labels" / split / f"im{index}.png")
    return root


# --------------------------------------------------------------------------- training

TINY_CLASSES = ["background", "red", "green"]


def write_tiny_dataset(root: Path, train: int = 6, val: int = 2, size: int = 24) -> Path:
    """A ``folder`` dataset: ``root/{images,labels}/{train,val}/NNN.png`` and classes.txt.

    Each image is dark noise with a red and a green 8 x 8 square (classes 1 and 2); the top
    row of every label is ignore (255).
    """
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in TINY_CLASSES))
    for split, count in (("train", train), ("val", val)):
        for index in range(count):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            label = np.zeros((size, size), np.uint8)
            for cls, channel in ((1, 0), (2, 1)):
                top, left = rng.integers(0, size - 8, 2)
                image[top : top + 8, left : left + 8, channel] = 220
                label[top : top + 8, left : left + 8] = cls
            label[0] = 255
            for folder, array in (("images", image), ("labels", label)):
                path = root / folder / split / f"{index:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
    return root


def tiny_recipe(root: Path, out: Path, **changes) -> Recipe:
    """A recipe for the tiny dataset: FCN-8s x 1/16 with BatchNorm, AdamW, 4 steps of 2."""
    values = {
        "dataset": "folder",
        "root": str(root),
        "out": str(out),
        "net": "fcn8s",
        "width": 1 / 16,
        "batch_norm": True,
        "dropout": 0.0,
        "preprocessing": "scale",
        "optimizer": "adamw",
        "lr": 1e-2,
        "weight_decay": 0.0,
        "iterations": 4,
        "batch_size": 2,
        "log_every": 1,
        "device": "cpu",
    }
    return Recipe(**{**values, **changes})


def losses(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


def run_cli(*args) -> int:
    """``fcnseg --threads 1 train ARGS`` in this process; its exit status."""
    from fcnseg.cli import main

    return main(["--threads", "1", "train", *map(str, args)])


def records(out: Path) -> list[dict]:
    """A run's ``metrics.jsonl`` records, without their wall-clock ``seconds``."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def assert_same_tensors(a, b, where: str) -> None:
    """``a`` and ``b`` (nested dicts, lists, tensors, plain values) equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


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


def kill_resume_and_compare(recipe: Recipe, folder: Path, kill_after: int, saved_at: int):
    """Train ``recipe`` whole; train a copy in ``folder/stopped`` that a subprocess SIGKILLs
    right after step ``kill_after`` (its last checkpoint must be at ``saved_at``) and resume it;
    assert both runs end bit-identical (weights, optimiser state, best score, metrics log).
    Returns ``(whole, resumed)`` results."""
    from fcnseg.checkpoint import read
    from fcnseg.train import train
    from fcnseg.train.recipe import dumps

    whole = train(recipe)
    stopped = dataclasses.replace(recipe, out=str(folder / "stopped"))
    recipe_file = folder / "stopped.toml"
    recipe_file.write_text(dumps(stopped))
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(recipe_file), str(kill_after)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert read(folder / "stopped" / "last.pt")["training"]["iteration"] == saved_at
    resumed = train(stopped, resume=True)
    assert resumed.iteration == whole.iteration
    assert resumed.best_mean_iu == whole.best_mean_iu
    for name in ("last.pt", "best.pt"):
        a, b = read(Path(recipe.out) / name), read(folder / "stopped" / name)
        assert_same_tensors(a["state_dict"], b["state_dict"], f"{name} state_dict")
        assert_same_tensors(
            a["training"]["optimizer"], b["training"]["optimizer"], f"{name} optimizer"
        )
        assert a["training"]["iteration"] == b["training"]["iteration"]
    assert records(Path(recipe.out)) == records(folder / "stopped")
    return whole, resumed


# --------------------------------------------------------------------------- alignment


def impulse_net(arch: str, geometry: str, path: str, **settings) -> nn.Module:
    """A VGG16 FCN whose convolutions copy their input's channel mean at the centre tap and
    whose only non-zero score layer is ``path``: a bright pixel travels, unmoved, to the one
    cell of that tap which holds it."""
    model = MODELS[arch](num_classes=1, width=1 / 16, geometry=geometry, dropout=0.0, **settings)
    model.eval()
    with torch.no_grad():
        for layer in model.backbone.children():
            if isinstance(layer, nn.Conv2d):
                layer.weight.zero_()
                centre = layer.kernel_size[0] // 2
                layer.weight[:, :, centre, centre] = 1 / layer.in_channels
                layer.bias.zero_()
        for name, layer in model.named_children():
            if name.startswith("score_"):
                layer.weight.fill_(1 / layer.in_channels if name == path else 0.0)
                layer.bias.zero_()
    return model


def assert_peak_at_cell_centre(
    out: torch.Tensor, bright: tuple[int, int], grid_start: int, stride: int
) -> None:
    """``out`` (H x W) peaks (a plateau where 2x steps stack) symmetrically about the centre of
    the cell of ``stride`` pixels, on the grid starting at pixel ``grid_start``, that holds pixel
    ``bright``: a crop off by one pixel moves the peak by one."""
    assert out.max() > 0
    peaks = (out >= out.max() * (1 - 1e-5)).nonzero()
    for axis, v in enumerate(bright):
        cell = (v - grid_start) // stride
        centre = grid_start + cell * stride + (stride - 1) / 2  # a half-integer
        lo, hi = peaks[:, axis].min().item(), peaks[:, axis].max().item()
        assert (lo + hi) / 2 == centre and hi - lo < stride, (axis, lo, hi, centre)
