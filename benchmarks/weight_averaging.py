"""Weight averaging on CamVid: which EMA decay, if any, scores better than the trained weights.

Trains a recipe once (by default ``recipes/camvid-cpu.toml``) while keeping exponential moving
averages of its weights and BatchNorm statistics at several decays
(:func:`fcnseg.train.averaging.weight_average`, as the recipe field ``ema_decay`` does), then scores
the trained weights and every average on the run's validation split, one view and with the
recipe's recorded test-time augmentation. The averages only read the weights, so the trained
weights are the ones the recipe gives without averaging (its ``ema_decay`` is set to 0 here);
one run compares them all. Writes the averages as ``OUT/ema-<decay>.pt`` state dicts. Run alone
on a quiet machine, e.g. on a held-out sequence:

    python benchmarks/weight_averaging.py --root ../shared/data/camvid --out runs/ema-holdout \\
        --options exclude_sequences=0006R0 --val-dataset camvid --val-split train \\
        --val-options sequences=0006R0 --threads 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import print_table, write_json

from fcnseg.evaluate.scoring import score
from fcnseg.inference.tta import NO_AUGMENTATION, Augmentation
from fcnseg.train import distributed
from fcnseg.train.averaging import weight_average
from fcnseg.train.entry import resolve_recipe
from fcnseg.train.trainer import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "camvid-cpu.toml"
DECAYS = (0.99, 0.995, 0.998, 0.999, 0.9995)


def key_values(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--decays", type=float, nargs="+", default=list(DECAYS))
    parser.add_argument("--options", nargs="*", default=[], help="train reader options k=v")
    parser.add_argument("--train-split", default=None)
    parser.add_argument("--val-dataset", default=None)
    parser.add_argument("--val-split", default=None)
    parser.add_argument("--val-options", nargs="*", default=[], help="val reader options k=v")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--val-images", type=int, default=0, help="score the first N (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="default: OUT/weight_averaging.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    overrides = {"root": args.root, "out": args.out, "val_every": 0, "ema_decay": 0.0}
    for name in ("train_split", "val_dataset", "val_split", "iterations"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.options:
        overrides["options"] = key_values(args.options)
    if args.val_options:
        overrides["val_options"] = key_values(args.val_options)
    recipe = resolve_recipe(args.recipe, overrides)
    if not all(0 < decay < 1 for decay in args.decays):
        parser.error(f"--decays must lie in (0, 1), got {args.decays}")
    if not recipe.val_split:
        parser.error("the run needs a validation split to score the averages on")

    processes = distributed.setup(recipe.device)
    trainer = Trainer(recipe, processes)
    averages = {decay: weight_average(trainer.net, decay) for decay in args.decays}  # not None

    def update(iteration: int, loss: float) -> None:
        for average in averages.values():
            average.update_parameters(trainer.net)

    started = time.perf_counter()
    trainer.run(on_step=update)
    train_seconds = time.perf_counter() - started

    recorded = recipe.test_time_augmentation()
    tta = Augmentation(recorded["flip"], tuple(recorded["scales"])) if recorded else None
    models = {"trained": trainer.net} | {f"ema {d:g}": a.module for d, a in averages.items()}
    count = len(trainer.val_set)
    shown = range(min(count, args.val_images) if args.val_images else count)
    rows = []
    for name, model in models.items():
        row = {"weights": name}
        for label, augmentation in (("one_view", NO_AUGMENTATION), ("tta", tta)):
            if augmentation is None:
                continue
            matrix = score(model, trainer.val_set, trainer.normalizer, recipe.resize, indices=shown,
                           augmentation=augmentation)  # fmt: skip
            metrics = matrix.compute()
            row[f"mean_iu_{label}"] = metrics["mean_iu"]
            row[f"iu_{label}"] = metrics["iu"]
        rows.append(row)
    for decay, average in averages.items():
        torch.save(average.module.state_dict(), Path(recipe.out) / f"ema-{decay:g}.pt")
    columns = ["weights", "mean_iu_one_view"] + (["mean_iu_tta"] if tta else [])
    print_table(rows, columns)
    write_json(
        args.json or Path(recipe.out) / "weight_averaging.json",
        "weight_averaging",
        rows,
        recipe=str(args.recipe),
        overrides=overrides,
        tta=str(tta) if tta else None,
        train_seconds=train_seconds,
    )


if __name__ == "__main__":
    main()
