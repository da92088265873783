"""``fcnseg predict``: label maps and overlays for images, folders and videos."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from fcnseg.cli import options
from fcnseg.cli.options import (
    add_speed_options,
    check_outputs,
    device_and_dtype,
    fraction,
)
from fcnseg.errors import (
    FcnsegError,
)

if TYPE_CHECKING:
    from fcnseg.inference.tta import Augmentation


def _segment_options(
    args: argparse.Namespace, augmentation: Augmentation, dtype: torch.dtype | None
) -> dict:
    """``fcnseg.segment`` keywords from predict's flags and the chosen augmentation."""
    return {
        "tile": args.tile,
        "overlap": args.overlap,
        "tile_above": args.tile_above or None,
        "flip": augmentation.flip,
        "scales": augmentation.scales,
        "crf": augmentation.crf or False,
        "dtype": dtype,
    }


def cmd_predict(args: argparse.Namespace) -> int:
    from fcnseg.inference.predict import normalizer_for
    from fcnseg.inference.segment import VIDEO_EXTENSIONS

    check_outputs(dirs={"--out": args.out})
    device, dtype = device_and_dtype(args)
    videos = [Path(p) for p in args.inputs if Path(p).suffix.lower() in VIDEO_EXTENSIONS]
    images = [p for p in args.inputs if Path(p).suffix.lower() not in VIDEO_EXTENSIONS]
    if args.frames and not videos:
        raise FcnsegError("--frames writes a video's label maps as PNGs; no video was given")
    model = options.load_model(args.checkpoint, device, args.geometry, args.fast)
    augmentation = options.augmentation_from(args, model)  # the checkpoint's unless flags say
    if not augmentation.plain:  # each view costs a pass of the net, the CRF its own
        views = augmentation.views
        print(
            f"fcnseg predict: test-time augmentation: {augmentation} "
            f"({views} view{'s' if views > 1 else ''})"
        )
    segment_options = _segment_options(args, augmentation, dtype)
    segment_options["preprocess"] = normalizer_for(model, source=args.checkpoint)
    code = _predict_videos(model, videos, args, segment_options) if videos else 0
    if images or not videos:
        code = max(code, _predict_images(model, images, args, segment_options))
    return code


def _predict_images(
    model: torch.nn.Module, images: list, args: argparse.Namespace, segment_options: dict
) -> int:
    from fcnseg.inference.files import predict_images

    result = predict_images(
        model,
        images,
        args.out,
        alpha=args.alpha,
        show=args.show,
        truth_dir=args.labels,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=lambda total: tqdm(total=total, desc="predict", unit="img"),
        **segment_options,
    )
    print(f"wrote {len(result.written)} label maps and overlays to {args.out}")
    for _, message in result.failed:
        print(f"fcnseg predict: error: {message}", file=sys.stderr)
    if result.failed:
        total = len(result.written) + len(result.failed)
        print(f"fcnseg predict: {len(result.failed)} of {total} images failed", file=sys.stderr)
        return 1
    return 0


def _predict_videos(
    model: torch.nn.Module, videos: list[Path], args: argparse.Namespace, segment_options: dict
) -> int:
    from fcnseg.inference.video import segment_video

    stems = [v.stem.casefold() for v in videos]
    clash = next((v for v in videos if stems.count(v.stem.casefold()) > 1), None)
    if clash is not None:
        raise FcnsegError(f"two videos named {clash.stem} would write the same files in {args.out}")
    for video in videos:
        result = segment_video(
            model,
            video,
            args.out,
            frames=args.frames,
            alpha=args.alpha,
            batch_size=args.batch_size,
            progress=functools.partial(tqdm, desc=video.name),
            **segment_options,
        )
        print(
            f"{video}: {result.frames} frames at {float(result.fps):.3g} fps, "
            f"{result.size[0]} x {result.size[1]}; wrote "
            + ", ".join(str(p) for p in result.written)
        )
    return 0


def _add_predict(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict",
        help="write label maps (indexed PNG) and overlays for images",
        description="For each image (files, and folders' images, not recursive, sorted) write "
        "OUT/<stem>.png (indexed PNG: values are class indices, the checkpoint's palette) and "
        "OUT/<stem>_overlay.png (with a legend of the classes present). Two inputs that would "
        "write the same name are an error, checked before anything is written. A video "
        "(.mp4, .mov, .avi, .mkv, .webm, ...) gives OUT/<stem>_labels.mp4 (or label PNGs with "
        "--frames), OUT/<stem>_overlay.mp4 and OUT/<stem>_legend.png; it needs PyAV "
        "(pip install 'fcnseg[video]').",
        epilog="exit status: 0 all written; 1 some images could not be read (each named on "
        "stderr, the others written); 2 bad arguments, checkpoint or inputs (nothing written).",
    )
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--checkpoint", required=True, help="fcnseg model file (.pt)")
    predict.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_speed_options(predict)
    predict.add_argument(
        "--alpha", type=fraction, default=0.5, help="colour share of the overlay, 0..1"
    )
    _add_segment_options(predict)
    predict.set_defaults(run=cmd_predict)


def _add_segment_options(predict: argparse.ArgumentParser) -> None:
    from fcnseg.inference.tiling import TILE_ABOVE

    tiles = predict.add_argument_group("large images (see fcnseg.inference.tiling)")
    tiles.add_argument(
        "--tile", type=int, default=None, metavar="PX", help="score in PX x PX tiles (e.g. 512)"
    )
    tiles.add_argument(
        "--overlap",
        type=int,
        default=None,
        metavar="PX",
        help="tile overlap (default: half the net's receptive field)",
    )
    tiles.add_argument(
        "--tile-above",
        type=int,
        default=TILE_ABOVE,
        metavar="N",
        help=f"tile images with more pixels automatically (default {TILE_ABOVE:,}; 0: never)",
    )
    options.add_tta_options(predict)
    batching = predict.add_argument_group("batching, pictures and videos")
    batching.add_argument(
        "--batch-size", type=int, default=4, metavar="N", help="images or frames per batch"
    )
    batching.add_argument(
        "--workers", type=int, default=2, metavar="N", help="processes decoding images"
    )
    batching.add_argument(
        "--show",
        action="store_true",
        help="also write OUT/<stem>_show.png: image | prediction (| truth), with a legend",
    )
    batching.add_argument(
        "--labels",
        default=None,
        metavar="DIR",
        help="truth label PNGs (<stem>.png, class indices) for the --show column",
    )
    batching.add_argument(
        "--frames",
        action="store_true",
        help="videos: label PNGs OUT/<stem>_labels/NNNNNN.png instead of <stem>_labels.mp4",
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_predict(commands)
