"""Flag types and the options that several subcommands share (device, precision, checkpoint,
output paths, dataset options)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fcnseg.errors import (
    FcnsegError,
)
from fcnseg.safe_files import (
    check_output_dir,
    check_output_file,
)

if TYPE_CHECKING:
    from fcnseg.inference.tta import Augmentation


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = float(text)
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in 0..1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in 0..1, got {text!r}")
    return value


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
        print(f"wrote {path}")


def check_outputs(
    files: dict[str, str | Path | None] | None = None,
    dirs: dict[str, str | Path | None] | None = None,
) -> None:
    """Every output path given (flag -> path; None: not given) must be writable: checked before
    the work, so that a command never fails after it (OutputPathError naming the flag)."""
    for flag, path in (files or {}).items():
        if path:
            check_output_file(path, flag)
    for flag, path in (dirs or {}).items():
        if path:
            check_output_dir(path, flag)


INT_OPTIONS = ("ignore_index",)  # dataset options that are numbers; all others stay strings


def device_and_dtype(args: argparse.Namespace) -> tuple[torch.device, torch.dtype | None]:
    """``--device`` and ``--precision`` through :mod:`fcnseg.runtime`; errors name the flag."""
    from fcnseg.runtime import DeviceError, precision_dtype, resolve_device

    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        raise DeviceError(f"--device {args.device}: {error}") from None
    try:
        return device, precision_dtype(args.precision, device)
    except DeviceError as error:
        raise DeviceError(f"--precision {args.precision}: {error}") from None


def load_model(
    path: str, device: torch.device, geometry: str | None = None, fast: bool = False
) -> torch.nn.Module:
    """``checkpoint.load`` onto ``device`` (with ``fast``, its fast layers swapped in); a load
    error keeps only its first line (torch's unpickling errors run to many lines), which names
    the file."""
    from fcnseg.checkpoint import CheckpointError, load
    from fcnseg.inference.fast import fast_modules

    try:
        model = load(path, geometry=geometry).to(device)
    except CheckpointError as error:
        raise CheckpointError(str(error).strip().splitlines()[0]) from None
    return fast_modules(model) if fast else model


def dataset_options(pairs: list[str]) -> dict[str, str | int]:
    """``["year=2012", "ignore_index=0"]`` -> ``{"year": "2012", "ignore_index": 0}``."""
    options: dict[str, str | int] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FcnsegError(f"--option expects key=value, got {pair!r}")
        if key in options:
            raise FcnsegError(f"--option {key} is given twice")
        if key in INT_OPTIONS:
            try:
                options[key] = int(value)
            except ValueError:
                raise FcnsegError(f"--option {key} must be an integer, got {value!r}") from None
        else:
            options[key] = value
    return options


def add_speed_options(command: argparse.ArgumentParser) -> None:
    from fcnseg.models import GEOMETRIES
    from fcnseg.runtime import DEVICES, PRECISION_ALIASES, PRECISIONS

    command.add_argument("--device", choices=DEVICES, default="auto")
    command.add_argument(
        "--precision",
        choices=[*PRECISIONS, *PRECISION_ALIASES],
        default="fp32",
        help="arithmetic of the net: fp32, or autocast to bf16 (CPU/GPU) or fp16 (GPU); "
        "'none' (the old recipe spelling) is read as fp32 and is deprecated",
    )
    command.add_argument(
        "--fast",
        action="store_true",
        help="swap in the opt-in fast layers (fcnseg.inference.fast.fast_modules: fc6/fc7 as "
        "matrix multiplies on the CPU, per-class bilinear upsampling); same labels up to float "
        "rounding. Default: the plain modules",
    )
    command.add_argument(
        "--geometry",
        choices=GEOMETRIES,
        default=None,
        help="rebuild a VGG16 FCN in this geometry, same weights (default: the checkpoint's)",
    )


def add_tta_options(command: argparse.ArgumentParser) -> None:
    """``--tta``, ``--scales`` and ``--crf``: test-time augmentation, by default the
    checkpoint's."""
    group = command.add_argument_group(
        "test-time augmentation (default: what the checkpoint records; see fcnseg.inference.tta)"
    )
    group.add_argument(
        "--tta",
        choices=["flip", "none"],
        default=None,
        help="flip: also score mirrored images; none: one view only (no flip, scale 1, no "
        "CRF), whatever the checkpoint records (--scales and --crf still apply)",
    )
    group.add_argument(
        "--scales",
        nargs="+",
        type=float,
        default=None,
        metavar="S",
        help="average over these scales (e.g. 0.75 1 1.25), on top of the net's input scale",
    )
    group.add_argument(
        "--crf",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refine the probabilities by a CRF with an appearance kernel, mean-field on the "
        "net's input grid (fcnseg.inference.crf; the checkpoint's parameters, else the "
        "defaults); --no-crf: none",
    )


def augmentation_from(args: argparse.Namespace, model: torch.nn.Module) -> Augmentation:
    """The augmentation ``--tta``, ``--scales`` and ``--crf`` ask for, the checkpoint's where
    they are silent."""
    from fcnseg.inference.predict import SegmentError
    from fcnseg.inference.tta import chosen_augmentation

    flip = {"flip": True, "none": False, None: None}[args.tta]
    scales = args.scales if args.scales is not None else ((1.0,) if args.tta == "none" else None)
    crf = getattr(args, "crf", None)
    if crf is None and args.tta == "none":
        crf = False
    try:
        return chosen_augmentation(model, flip, scales, crf)
    except SegmentError as error:  # the checkpoint's own values were checked when it loaded
        raise SegmentError(f"--scales {' '.join(map(str, args.scales))}: {error}") from None
