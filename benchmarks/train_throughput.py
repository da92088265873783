"""Training throughput of a recipe: images per second and GFLOP/s of one training step, against
this machine's float32 matmul rate measured in the same process.

One row per recipe (and per ``--variant``, a recipe with some fields changed): the recipe's net,
optimiser, loss and class-weighting on a random batch of its crop size, in its memory format and
precision. FLOPs are counted on one real step (forward, loss, backward) with torch's
``FlopCounterMode`` (multiply-add = 2 FLOPs; the optimiser update and an ``ema_decay`` average
are timed, not counted), the step is timed as the median of ``--repeats`` steps after warm-up.
With ``--root``, a second column gives the images per second of the recipe's data pipeline alone
(decode, augment, collate, with its ``num_workers``), to show which of the two bounds a run.

Before and after a recipe change, in one run (the ratio is what to trust):

    git show REV:recipes/camvid-cpu.toml > /tmp/before.toml
    python benchmarks/train_throughput.py --recipe /tmp/before.toml \\
        --recipe recipes/camvid-cpu.toml --root ../shared/data/camvid --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import time
from functools import partial
from pathlib import Path

import torch
from common import print_table, write_json
from speed_rows import matmul_gflops, median_seconds
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from fcnseg.data.transforms import collate_pad, normalized_channels
from fcnseg.train.averaging import weight_average
from fcnseg.train.build import (
    TrainTransform,
    make_model,
    make_normalizer,
    make_optimizer,
    open_splits,
    training_layout,
)
from fcnseg.train.losses import segmentation_loss
from fcnseg.train.recipe import Recipe, load, parse_value
from fcnseg.train.sampler import KeyedSamples, ResumableBatchSampler
from fcnseg.train.trainer import amp_dtype_for

CAMVID_CLASSES = 11


def training_step(recipe: Recipe, num_classes: int, compiled: bool = False):
    """A closure running one optimiser step of ``recipe`` on a fixed random batch; with
    ``compiled``, the net's forward and backward go through ``torch.compile`` (inductor)."""
    torch.manual_seed(recipe.seed)
    # the net's input: the normalised RGB batch (6 channels for "imagenet+per_image")
    channels = normalized_channels(make_normalizer(recipe.preprocessing, 3, recipe.mean), 3)
    net = make_model(recipe, num_classes, channels).train()
    training_layout(net, recipe)  # channels-last, matmul convolutions: as the trainer
    memory = torch.channels_last if recipe.channels_last else torch.contiguous_format
    optimizer = make_optimizer(recipe, net)
    average = weight_average(net, recipe.ema_decay)  # None without ema_decay
    height, width = recipe.crop_size or (360, 480)
    images = torch.randn(recipe.batch_size, channels, height, width).contiguous(
        memory_format=memory
    )
    labels = torch.randint(0, num_classes, (recipe.batch_size, height, width))
    weights = torch.rand(num_classes) + 0.5 if recipe.class_weights != "none" else None
    dtype = amp_dtype_for(recipe.amp, torch.device("cpu"))  # the trainer's reading of amp
    forward = torch.compile(net) if compiled else net

    def step() -> None:
        with torch.autocast("cpu", dtype, enabled=dtype is not None):
            scores = forward(images)
        loss = segmentation_loss(
            scores.float(),
            labels,
            255,
            weights,
            recipe.loss,
            lovasz_weight=recipe.lovasz_weight,
            jaccard_weight=recipe.jaccard_weight,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update_parameters(net)

    return step


def step_gflop(step) -> float:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9


def loader_images_per_second(recipe: Recipe, root: str, batches: int) -> float:
    """Images per second of the recipe's data pipeline alone (no net)."""
    train, _ = open_splits(recipe.replace(root=root, val_split=""))
    normalizer = make_normalizer(recipe.preprocessing, 3, recipe.mean)
    sampler = ResumableBatchSampler(len(train), recipe.batch_size, recipe.seed)
    # the train split is also the donors of copy-paste and CutMix, as in training
    augment = TrainTransform(recipe, normalizer, train.ignore_index, train, train.classes)
    samples = KeyedSamples(train, augment)
    loader = DataLoader(
        samples,
        batch_sampler=sampler,
        collate_fn=partial(collate_pad, ignore_index=train.ignore_index, image_pad=0.0),
        num_workers=recipe.num_workers,
    )
    iterator = iter(loader)
    next(iterator)  # workers started, first batch decoded
    started = time.perf_counter()
    for _ in itertools.islice(iterator, batches):
        pass
    return batches * recipe.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", required=True, help="repeat to compare")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE[;KEY=VALUE]",
        help="a row: the first recipe with these fields changed (learnable_upsampling=false)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also a row per recipe with the net under torch.compile (its compilation untimed)",
    )
    parser.add_argument("--root", default="", help="time the data pipeline too (CamVid root)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--loader-batches", type=int, default=30)
    parser.add_argument("--json", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recipes = [(path, load(path)) for path in args.recipe]
    for text in args.variant:
        changes = dict(part.split("=", 1) for part in text.split(";"))
        base = recipes[0][1]
        changed = {key: parse_value(key, value) for key, value in changes.items()}
        recipes.append((f"{Path(args.recipe[0]).name} + {text}", base.replace(**changed)))

    matmul = matmul_gflops()
    rows = []
    runs = [(name, recipe, False) for name, recipe in recipes]
    if args.compile:
        runs += [(name, recipe, True) for name, recipe in recipes]
    flops: dict[str, float] = {}  # the eager step's count, which the compiled row shares
    for name, recipe, compiled in runs:
        step = training_step(recipe, CAMVID_CLASSES, compiled)
        if not compiled:  # a compiled step runs inductor's kernels, which the counter cannot see
            flops[name] = step_gflop(step)
        flop = flops[name]
        seconds = median_seconds(step, args.repeats, warmup=2)  # warm-up: the compilation
        loader = (
            loader_images_per_second(recipe, args.root, args.loader_batches)
            if args.root and not compiled
            else None
        )
        height, width = recipe.crop_size or (360, 480)
        rows.append(
            {
                "recipe": f"{name} + torch.compile" if compiled else name,
                "batch": f"{recipe.batch_size} x {height}x{width}",
                "ms/step": seconds * 1e3,
                "img/s": recipe.batch_size / seconds,
                "GFLOP/step": flop,
                "GFLOP/s": flop / seconds,
                "x matmul": flop / seconds / matmul,
                "loader img/s": loader,
            }
        )
    print(f"fp32 matmul (2048^3): {matmul:.1f} GFLOP/s, {args.threads} threads")
    print_table(rows, list(rows[0]))
    write_json(args.json, "train_throughput", rows, matmul_gflops=matmul)


if __name__ == "__main__":
    main()
