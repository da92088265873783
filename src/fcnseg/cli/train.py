"""``fcnseg demo`` and ``fcnseg train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from fcnseg.cli.options import (
    check_outputs,
    nonnegative_int,
    positive_float,
    positive_int,
    write_json,
)
from fcnseg.evaluate.metrics import format_heads_report, format_report


def cmd_demo(args: argparse.Namespace) -> int:
    from fcnseg.train.demo import DemoConfig, run_demo

    check_outputs(files={"--json": args.json}, dirs={"--out": args.out})

    config = DemoConfig(
        seed=args.seed,
        iterations=args.iterations,
        width=args.width,
        train_images=args.train_images,
        val_images=args.val_images,
    )
    print(
        f"fcnseg demo: FCN-8s (VGG16 x {config.width}, BatchNorm) on generated shapes, "
        f"{config.iterations} iterations of {config.batch_size} images, seed {config.seed}"
    )
    result = run_demo(
        config,
        out_dir=args.out,
        progress=lambda total, initial: tqdm(total=total, initial=initial, desc="train", unit="it"),
    )
    print(f"trained in {result.seconds:.0f} s; final loss {result.losses[-1]:.4f}")
    print(f"held-out images: {config.val_images}")
    print(format_report(result.metrics, result.classes))
    print(
        f"wrote {Path(args.out) / 'demo_grid.png'} and {Path(args.out) / 'demo_fcn8s.pt'} "
        f"(the training run: {Path(args.out) / 'run'})"
    )
    write_json(args.json, result.to_json())
    return 0


def _add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="train an FCN-8s on generated shapes and score it")
    demo.add_argument("--seed", type=nonnegative_int, default=0)
    demo.add_argument("--iterations", type=positive_int, default=500)
    demo.add_argument(
        "--width", type=positive_float, default=0.125, help="VGG16 channel multiplier"
    )
    demo.add_argument(
        "--train-images",
        type=positive_int,
        default=2000,
        metavar="N",
        help="generated training images (their class frequencies set the loss weights)",
    )
    demo.add_argument(
        "--val-images", type=positive_int, default=100, metavar="N", help="held-out images"
    )
    demo.add_argument("--out", default="demo-out", help="folder for the figure and the model")
    demo.add_argument("--json", default=None, metavar="PATH", help="write the figures as JSON")
    demo.set_defaults(run=cmd_demo)


_KIND_METAVARS = {
    "str": "TEXT",
    "int": "N",
    "float": "X",
    "floats": "X,X",
    "ints": "N,N",
    "strs": "NAME,NAME",
}


def cmd_train(args: argparse.Namespace) -> int:
    from fcnseg.train import launched_rank, resolve_recipe, train
    from fcnseg.train.recipe import FIELDS

    main_process = launched_rank() == 0
    given = {f.name: getattr(args, f"key_{f.name}") for f in FIELDS}
    given = {name: value for name, value in given.items() if value is not None}
    recipe = resolve_recipe(args.recipe, given, args.resume)
    if main_process:
        length = f"{recipe.epochs} epochs" if recipe.epochs else f"{recipe.iterations} iterations"
        print(
            f"fcnseg train: {recipe.net} (VGG16 x {recipe.width}) on {recipe.dataset} "
            f"{recipe.root or '(no root)'}, {length} of batch {recipe.batch_size}, out "
            f"{recipe.out or '(no out)'}{' (resuming)' if args.resume else ''}"
        )
    if recipe.out:
        check_outputs(dirs={"--out": recipe.out})
    # TrainingDiverged (status 1), a busy --out, a full disk (3) and Ctrl-C (130, after a
    # checkpoint) reach main() as one line each.
    result = train(
        recipe,
        resume=args.resume,
        progress=lambda total, initial: tqdm(
            total=total, initial=initial, desc="train", unit="it", dynamic_ncols=True
        ),
    )
    if main_process:
        print(f"{result.init.summary()}")
        print(
            f"trained to iteration {result.iteration} in {result.seconds:.0f} s; "
            f"final loss {result.final_loss:.4g}"
        )
        if result.metrics is not None and "geometric_pixel_acc" in result.metrics:
            geometric = {
                key.removeprefix("geometric_"): value
                for key, value in result.metrics.items()
                if key.startswith("geometric_")
            }
            heads = {"semantic": result.metrics, "geometric": geometric}
            names = {"semantic": result.classes, "geometric": result.geometric_classes}
            print(format_heads_report(heads, names))
        elif result.metrics is not None:
            print(format_report(result.metrics, result.classes))
        if result.best_mean_iu is not None:
            print(
                f"best {recipe.best_metric.replace('_iu', ' IU').replace('_', ' ')} "
                f"{result.best_mean_iu:.4f} at iteration {result.best_iteration}"
            )
        written = ["last.pt", "best.pt", "metrics.jsonl", "curves.png", "recipe.toml"]
        if not (Path(result.out) / "best.pt").is_file():  # no validation: nothing to pick by
            written.remove("best.pt")
        print(f"wrote {result.out}: {', '.join(written)}")
    return 0


def _add_train(commands: argparse._SubParsersAction) -> None:
    from fcnseg.train.recipe import CHOICES, FIELDS, field_help, kind_of

    train = commands.add_parser(
        "train",
        help="train an FCN from a recipe (TOML); flags override its keys",
        description="Train from a recipe file (see recipes/*.toml and fcnseg/recipe.py). Every "
        "recipe key is also a flag that overrides it: --key VALUE, lists as a,b, tables as "
        "k=v,k=v, booleans as --key / --no-key. Writes recipe.toml, run.json, last.pt, best.pt, "
        "metrics.jsonl and curves.png to --out. Several processes: "
        "torchrun --nproc_per_node N -m fcnseg.cli train ...",
        epilog="exit status: 0 done; 1 the loss diverged (NaN or inf; the last checkpoint with "
        "finite weights is kept); 2 bad recipe, flag, dataset, init weights or output folder, or "
        "another run holds --out; 3 no space left on the device (last.pt intact); 130 "
        "interrupted (Ctrl-C; last.pt written at that step, --resume continues exactly). One "
        "run at a time writes a folder: it holds OUT/.lock (its PID) from its first moment.",
    )
    train.add_argument(
        "--recipe", default=None, metavar="TOML", help="default with --resume: OUT/recipe.toml"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last.pt"
    )
    keys = train.add_argument_group("recipe keys")
    helps = field_help()
    for f in FIELDS:
        flag, dest, kind = "--" + f.name.replace("_", "-"), f"key_{f.name}", kind_of(f.name)
        text = helps.get(f.name, "").replace("%", "%%")
        if kind == "bool":
            keys.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text
            )
            continue
        choices = CHOICES.get(f.name)
        metavar = "{" + ",".join(choices) + "}" if choices else _KIND_METAVARS.get(kind, "K=V,...")
        keys.add_argument(flag, dest=dest, default=None, metavar=metavar, help=text)
    train.set_defaults(run=cmd_train)


def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_demo(commands)
    _add_train(commands)
