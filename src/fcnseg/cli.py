"""The ``fcnseg`` command: subcommands over the library. Only this module parses, prints, exits."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from fcnseg.metrics import format_report


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
        print(f"wrote {path}")


def cmd_demo(args: argparse.Namespace) -> int:
    from fcnseg.demo import DemoConfig, run_demo

    config = DemoConfig(seed=args.seed, iterations=args.iterations, width=args.width)
    print(
        f"fcnseg demo: FCN-8s (VGG16 x {config.width}, BatchNorm) on generated shapes, "
        f"{config.iterations} iterations of {config.batch_size} images, seed {config.seed}"
    )
    result = run_demo(
        config, out_dir=args.out, progress=lambda total: tqdm(total=total, desc="train", unit="it")
    )
    print(f"trained in {result.seconds:.0f} s; final loss {result.losses[-1]:.4f}")
    print(f"held-out images: {config.val_images}")
    print(format_report(result.metrics, result.classes))
    print(f"wrote {Path(args.out) / 'demo_grid.png'} and {Path(args.out) / 'demo_fcn8s.pt'}")
    _write_json(args.json, result.to_json())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcnseg", description="Fully Convolutional Networks for semantic segmentation."
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="train an FCN-8s on generated shapes and score it")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--iterations", type=int, default=500)
    demo.add_argument("--width", type=float, default=0.125, help="VGG16 channel multiplier")
    demo.add_argument("--out", default="demo-out", help="folder for the figure and the model")
    demo.add_argument("--json", default=None, metavar="PATH", help="write the figures as JSON")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"fcnseg {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
