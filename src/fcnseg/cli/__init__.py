"""The ``fcnseg`` command: one module per group of subcommands, each with its ``cmd_*`` functions
(run a subcommand: call the library, print, return the exit status) and ``add_commands`` (its
argparse parsers). Only this package parses arguments, prints or exits.

- :mod:`~fcnseg.cli.train`: ``demo``, ``train``
- :mod:`~fcnseg.cli.evaluate`: ``eval``
- :mod:`~fcnseg.cli.predict`: ``predict`` (images, folders, videos)
- :mod:`~fcnseg.cli.interop`: ``models``, ``import-caffe``, ``export``
- :mod:`~fcnseg.cli.hub`: ``weights``, ``download``
- :mod:`~fcnseg.cli.options`: flag types and the options several subcommands share
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from fcnseg.cli import evaluate, hub, interop, predict, train
from fcnseg.cli.options import positive_int
from fcnseg.errors import (
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    EXIT_STATUSES,
    FcnsegError,
    is_disk_full,
)
from fcnseg.safe_files import DEFAULT_MAX_PIXELS, set_max_pixels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcnseg",
        description="Fully Convolutional Networks for semantic segmentation.",
        epilog="exit status:\n"
        + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_STATUSES.items())
        + "\nErrors in what was given print one line naming the file or flag; any other error "
        "is a bug and prints its traceback.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse images with more pixels, from their header, before decoding them "
        f"(decompression bombs; default {DEFAULT_MAX_PIXELS:,})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in (train, evaluate, predict, interop, hub):
        module.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_max_pixels(args.max_pixels)
    try:
        return args.run(args)
    except FcnsegError as error:  # what was given is wrong: one line, the class's status
        print(f"fcnseg {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return error.exit_status
    except OSError as error:
        if not is_disk_full(error):
            raise
        where = f" writing {error.filename}" if error.filename else ""
        print(f"fcnseg {args.command}: error: no space left on device{where}", file=sys.stderr)
        return EXIT_DISK_FULL
    except KeyboardInterrupt as error:  # training raises one that says how to resume
        message = str(error) or "interrupted"
        print(f"fcnseg {args.command}: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _one_line(error: BaseException) -> str:
    """The first line of an error's message (torch's and pickle's run to many lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
