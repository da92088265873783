"""The demo: an ordinary training run (:func:`fcnseg.train.train`) on generated shapes.

Everything is made in code (``fcnseg.data.synthetic``, the dataset ``synthetic``), so it needs
no download. :func:`demo_recipe` is the recipe: a width-1/8 FCN-8s with BatchNorm, 500
iterations of 4 whole images of one size, AdamW with a one-cycle schedule and median-frequency
class weights (two to three minutes on two cores). The run's validation, the one scoring
function of fcnseg (:func:`fcnseg.evaluate.scoring.score`), scores the held-out images.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fcnseg.checkpoint import load, save
from fcnseg.data.by_name import open_dataset
from fcnseg.inference.predict import input_scale_of, normalizer_for, palette_for, predict_image
from fcnseg.inference.visualize import comparison_grid
from fcnseg.train.entry import train
from fcnseg.train.recipe import Recipe

logger = logging.getLogger(__name__)

RUN_FOLDER = "run"  # the trainer's files, inside the demo's output folder
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "recipe.toml", "run.json")


@dataclass
class DemoConfig:
    seed: int = 0  # seeds the weights, the data order and the generated images
    iterations: int = 500  # optimiser steps
    batch_size: int = 4  # whole images of one size per step
    width: float = 0.125  # channel multiplier of VGG16 (1/8: 64x cheaper than the paper's)
    lr: float = 1e-3  # peak learning rate of the one-cycle schedule (AdamW)
    weight_decay: float = 1e-4
    sizes: tuple[int, ...] = (96, 128, 160)  # image sides, drawn per image and axis
    train_images: int = 2000  # generated training images (500 iterations see each once)
    val_images: int = 100  # held-out images, generated with another seed
    grid_rows: int = 6  # rows of the image | truth | prediction figure
    class_weights: bool = True  # median-frequency class weights over the training images


@dataclass
class DemoResult:
    config: DemoConfig
    metrics: dict
    classes: list[str]
    losses: list[float] = field(default_factory=list)  # one per iteration
    seconds: float = 0.0  # the training run's wall time (its final validation included)

    def to_json(self) -> dict:
        return {
            "config": asdict(self.config),
            "classes": self.classes,
            "metrics": self.metrics,
            "final_loss": self.losses[-1] if self.losses else None,
            "train_seconds": self.seconds,
        }


def demo_recipe(config: DemoConfig, out: str | Path) -> Recipe:
    """The demo as a recipe for the one trainer (writes its run into ``out``)."""
    return Recipe(
        dataset="synthetic",
        options={
            "seed": config.seed,
            "train_images": config.train_images,
            "val_images": config.val_images,
            "sizes": ",".join(str(side) for side in config.sizes),
        },
        net="fcn8s",
        width=config.width,
        batch_norm=True,
        dropout=0.0,
        preprocessing="scale",  # raw 0..255 to about -2..2
        batch_size=config.batch_size,
        batch_by_size=True,
        optimizer="adamw",
        lr=config.lr,
        momentum=0.9,  # AdamW's beta1
        weight_decay=config.weight_decay,
        schedule="onecycle",
        pct_start=0.15,
        class_weights="median_frequency" if config.class_weights else "none",
        iterations=config.iterations,
        seed=config.seed,
        out=str(out),
    )


def run_demo(
    config: DemoConfig,
    out_dir: str | Path | None = None,
    progress: Callable[..., Any] | None = None,
) -> DemoResult:
    """Train and score; write ``demo_grid.png``, ``demo_fcn8s.pt`` and the run (``run/``:
    checkpoints, metrics log, curves) into ``out_dir`` (a temporary folder when None).

    A new demo replaces the previous demo's run in ``out_dir``. ``progress(total=, initial=)``
    makes a progress bar (e.g. ``tqdm``), updated each step with the loss.
    """
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="fcnseg-demo-") as folder:
            return _run(config, Path(folder), progress, keep=False)
    return _run(config, Path(out_dir), progress, keep=True)


def _run(
    config: DemoConfig, out: Path, progress: Callable[..., Any] | None, keep: bool
) -> DemoResult:
    run_dir = out / RUN_FOLDER
    for name in RUN_FILES:  # the previous demo's run, so this one starts afresh
        (run_dir / name).unlink(missing_ok=True)
    recipe = demo_recipe(config, run_dir)
    losses: list[float] = []
    result = train(recipe, progress=progress, on_step=lambda _, loss: losses.append(loss))
    assert result.metrics is not None  # the run validates at its end
    if keep:
        model = load(run_dir / "last.pt")
        val = open_dataset("synthetic", "", "val", **recipe.options)
        preprocess, scale, palette = (
            normalizer_for(model),
            input_scale_of(model),
            palette_for(model),
        )
        rows = []
        for index in range(min(config.grid_rows, len(val))):
            image, label = val[index]
            rows.append((image, label, predict_image(model, image, preprocess, scale)))
        comparison_grid(rows, palette).save(out / "demo_grid.png")
        save(model, out / "demo_fcn8s.pt")  # its metadata travels with it
        logger.info("wrote %s and %s", out / "demo_grid.png", out / "demo_fcn8s.pt")
    return DemoResult(config, result.metrics, result.classes, losses, result.seconds)
