"""The demo: train an FCN-8s on generated shapes on the CPU and score it with the four metrics.

Everything is made in code (``fcnseg.data.synthetic``), so it needs no download. With the
defaults it trains a width-1/8 FCN-8s with BatchNorm for 500 iterations of 4 whole images
(two to three minutes on two cores) and scores held-out images of sizes it trained on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fcnseg.checkpoint import save
from fcnseg.data.class_weights import median_frequency_weights
from fcnseg.data.palettes import voc_palette
from fcnseg.data.sampling import SizeGroupedBatchSampler
from fcnseg.data.synthetic import SyntheticShapes
from fcnseg.data.transforms import Normalize
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.inference.visualize import comparison_grid
from fcnseg.models import fcn8s

logger = logging.getLogger(__name__)

# Raw 0..255 values to roughly zero mean and unit scale.
NORMALIZE = Normalize(mean=(128.0, 128.0, 128.0), std=(64.0, 64.0, 64.0))


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
    balance_images: int = 200  # training images counted for median-frequency class weights (0: off)


@dataclass
class DemoResult:
    config: DemoConfig
    metrics: dict
    classes: list[str]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "config": asdict(self.config),
            "classes": self.classes,
            "metrics": self.metrics,
            "final_loss": self.losses[-1] if self.losses else None,
            "train_seconds": self.seconds,
        }


def _normalized(batch):
    images, labels = batch
    return NORMALIZE(images, labels)


def run_demo(
    config: DemoConfig,
    out_dir: str | Path | None = None,
    progress: Callable | None = None,
) -> DemoResult:
    """Train and evaluate; write ``demo_grid.png`` and ``demo_fcn8s.pt`` into ``out_dir``.

    ``progress(total=n)`` makes a progress bar (e.g. ``tqdm``): updated each step, with the loss.
    """
    torch.manual_seed(config.seed)
    train = SyntheticShapes(config.train_images, config.sizes, seed=2 * config.seed + 1)
    val = SyntheticShapes(config.val_images, config.sizes, seed=2 * config.seed + 2)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = SizeGroupedBatchSampler(train.size_of, len(train), config.batch_size, generator)
    loader = DataLoader(train, batch_sampler=sampler)

    model = fcn8s(num_classes=train.num_classes, width=config.width, batch_norm=True, dropout=0.0)
    weight = None
    if config.balance_images:
        labels = (train[i][1] for i in range(min(config.balance_images, len(train))))
        weight = median_frequency_weights(labels, train.num_classes, train.ignore_index)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.iterations, pct_start=0.15
    )
    bar = progress(total=config.iterations) if progress is not None else None
    losses: list[float] = []
    batches = iter(loader)
    start = time.perf_counter()
    model.train()
    for _ in range(config.iterations):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        images, labels = _normalized(batch)
        loss = F.cross_entropy(
            model(images), labels, weight=weight, ignore_index=train.ignore_index
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            bar.update(1)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()

    model.eval()
    matrix = ConfusionMatrix(val.num_classes, val.ignore_index)
    rows = []
    with torch.inference_mode():
        for index in range(len(val)):
            image, label = val[index]
            prediction = model(NORMALIZE(image, label)[0][None]).argmax(1)[0]
            matrix.update(prediction, label)
            if index < config.grid_rows:
                rows.append((image, label, prediction))
    result = DemoResult(config, matrix.compute(), list(val.classes), losses, seconds)

    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        palette = voc_palette(val.num_classes)
        comparison_grid(rows, palette).save(out_dir / "demo_grid.png")
        save(
            model,
            out_dir / "demo_fcn8s.pt",
            classes=result.classes,
            palette=palette,
            preprocessing=NORMALIZE.spec(),
            ignore_index=val.ignore_index,
        )
    return result
