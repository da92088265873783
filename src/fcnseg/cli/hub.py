"""``fcnseg weights`` and ``fcnseg download``: the registry's weight files and datasets."""

from __future__ import annotations

import argparse

from fcnseg.errors import (
    FcnsegError,
)


def _weights_rows() -> list[tuple[str, ...]]:
    from fcnseg.hub import registry
    from fcnseg.hub.weights import checksum_status, converted_path, raw_path

    rows = []
    for entry in registry.WEIGHTS:
        cached = raw_path(entry).is_file()
        if entry.format == "caffemodel" and converted_path(entry).is_file():
            state = "converted"
        else:
            state = "cached" if cached else "-"
        fills = entry.arch if entry.fills == "net" else f"{entry.backbone} backbone"
        rows.append(
            (
                entry.name,
                fills,
                f"{entry.size / 1e6:.0f} MB",
                state,
                entry.preprocessing,
                checksum_status(entry),
            )
        )
    return rows


def cmd_weights(args: argparse.Namespace) -> int:
    from fcnseg.hub import cache_dir, registry
    from fcnseg.hub.weights import fetch_converted

    if args.action == "list":
        header = ("name", "fills", "size", "cache", "input", "checksum")
        rows = [header, *_weights_rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
        print(f"cache: {cache_dir()}")
        return 0
    if not args.names:
        raise FcnsegError(f"fcnseg weights {args.action}: name the weights (see fcnseg weights)")
    for name in args.names:
        path = fetch_converted(registry.find(name), progress=not args.quiet)
        print(path if args.action == "path" else f"{name}: {path}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from fcnseg.hub.datasets import fetch_dataset

    for name in args.datasets:
        fetch_dataset(
            name,
            args.root,
            keep_archives=args.keep_archives,
            progress=not args.quiet,
            on_step=print,
        )
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    from fcnseg.hub.datasets import names

    weights = commands.add_parser(
        "weights",
        help="list the known weight files, or download them ahead of time",
        description="list: every registered weight file (name, what it fills, size, cache "
        "state, the input it expects, how it is verified). download NAME...: fetch, verify "
        "and (caffemodels) convert into the cache ($FCNSEG_HOME). path NAME: the same, "
        "printing only the path (for --model or --init). Environment: FCNSEG_HOME, "
        "FCNSEG_MIRROR=URL (replaces scheme and host), FCNSEG_OFFLINE=1.",
    )
    weights.add_argument("action", nargs="?", choices=("list", "download", "path"), default="list")
    weights.add_argument("names", nargs="*", metavar="NAME")
    weights.add_argument("--quiet", action="store_true", help="no progress bar")
    weights.set_defaults(run=cmd_weights)
    download = commands.add_parser(
        "download",
        help="download a dataset and unpack it into the layout its reader takes",
        description="Fetch from the publisher, verify (where a checksum is published), unpack "
        "safely under --root, and open the reader on the result.",
    )
    download.add_argument(
        "datasets", nargs="+", choices=names(), metavar="DATASET", help=", ".join(names())
    )
    download.add_argument("--root", required=True, metavar="DIR", help="folder to unpack into")
    download.add_argument(
        "--keep-archives", action="store_true", help="keep DIR/downloads/ after unpacking"
    )
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(run=cmd_download)
