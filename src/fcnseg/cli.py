"""The ``fcnseg`` command: subcommands over the library. Only this module parses, prints, exits."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from fcnseg.errors import (
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    EXIT_STATUSES,
    FcnsegError,
    InputNotFoundError,
    is_disk_full,
)
from fcnseg.evaluate.metrics import format_report
from fcnseg.safe_files import (
    DEFAULT_MAX_PIXELS,
    check_output_dir,
    check_output_file,
    set_max_pixels,
)

# --------------------------------------------------------------------------- flag types
# argparse calls these on the flag's text; a ValueError (or ArgumentTypeError) becomes
# "fcnseg: error: argument --flag: invalid <name> value: 'text'" and exit status 2.


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


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
        print(f"wrote {path}")


def _check_outputs(
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


def cmd_demo(args: argparse.Namespace) -> int:
    from fcnseg.train.demo import DemoConfig, run_demo

    _check_outputs(files={"--json": args.json}, dirs={"--out": args.out})

    config = DemoConfig(seed=args.seed, iterations=args.iterations, width=args.width)
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
    _write_json(args.json, result.to_json())
    return 0


# --------------------------------------------------------------------------- train

_KIND_METAVARS = {"str": "TEXT", "int": "N", "float": "X", "floats": "X,X", "ints": "N,N"}


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
        _check_outputs(dirs={"--out": recipe.out})
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
        if result.metrics is not None:
            print(format_report(result.metrics, result.classes))
        if result.best_mean_iu is not None:
            print(f"best mean IU {result.best_mean_iu:.4f} at iteration {result.best_iteration}")
        print(f"wrote {result.out}: last.pt, best.pt, metrics.jsonl, curves.png, recipe.toml")
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


# --------------------------------------------------------------------------- eval and predict

INT_OPTIONS = ("ignore_index",)  # dataset options that are numbers; all others stay strings


def _device_and_dtype(args: argparse.Namespace) -> tuple[torch.device, torch.dtype | None]:
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


def _load_model(
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


def _dataset_options(pairs: list[str]) -> dict[str, str | int]:
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


def cmd_eval(args: argparse.Namespace) -> int:
    from fcnseg.data import open_dataset
    from fcnseg.evaluate.scoring import (
        check_compatible,
        confusion_matrix_figure,
        evaluate,
        metrics_json,
    )
    from fcnseg.inference.predict import normalizer_for
    from fcnseg.models import settings_of
    from fcnseg.runtime import canonical_precision

    _check_outputs(files={"--json": args.json, "--figure": args.figure})
    if args.figure is None and args.json:  # the default figure beside the JSON
        _check_outputs(
            files={"--json": Path(args.json).with_name(f"{Path(args.json).stem}_confusion.png")}
        )
    device, dtype = _device_and_dtype(args)
    options = _dataset_options(args.option)
    if args.limit is not None and args.limit < 1:
        raise FcnsegError(f"--limit must be >= 1, got {args.limit}")
    model = _load_model(args.checkpoint, device, args.geometry, args.fast)
    root = Path(args.root or "")
    if args.dataset != "synthetic" and (args.root is None or not root.is_dir()):
        raise InputNotFoundError(f"--root {args.root}: dataset folder not found")
    dataset = open_dataset(args.dataset, root, args.split, **options)
    check_compatible(model, dataset, source=args.checkpoint)
    preprocess = normalizer_for(model, source=args.checkpoint)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    print(
        f"fcnseg eval: {args.checkpoint} on {args.dataset} {args.split} "
        f"({count} of {len(dataset)} images) on {device}, {canonical_precision(args.precision)}"
        + (", fast layers" if args.fast else "")
        + (f", {args.geometry} geometry" if args.geometry else "")
    )
    matrix = evaluate(
        model,
        dataset,
        device=device,
        progress=lambda total: tqdm(total=total, desc="eval", unit="img"),
        preprocess=preprocess,
        limit=args.limit,
        dtype=dtype,
    )
    metrics = matrix.compute()
    print(format_report(metrics, dataset.classes))
    extra = {
        "checkpoint": str(args.checkpoint),
        "dataset": args.dataset,
        "root": str(root),
        "split": args.split,
        "options": options,
        "images": count,
        "ignore_index": dataset.ignore_index,
        "precision": canonical_precision(args.precision),
        "fast": args.fast,
        "geometry": settings_of(model).get("geometry"),
    }
    payload = metrics_json(metrics, dataset.classes, extra)
    payload["confusion_matrix"] = matrix.matrix.cpu().tolist()  # n_ij: true i, predicted j
    _write_json(args.json, payload)
    figure = args.figure
    if figure is None and args.json:
        figure = Path(args.json).with_name(f"{Path(args.json).stem}_confusion.png")
    if figure is not None:
        print(f"wrote {confusion_matrix_figure(matrix, dataset.classes, figure)}")
    return 0


def _segment_options(args: argparse.Namespace, dtype: torch.dtype | None) -> dict:
    """``fcnseg.segment`` keywords from predict's flags."""
    from fcnseg.inference.tta import parse_tta

    return {
        "tile": args.tile,
        "overlap": args.overlap,
        "tile_above": args.tile_above or None,
        "flip": parse_tta(args.tta),
        "scales": args.scales,
        "dtype": dtype,
    }


def cmd_predict(args: argparse.Namespace) -> int:
    from fcnseg.inference.predict import normalizer_for
    from fcnseg.inference.segment import VIDEO_EXTENSIONS

    _check_outputs(dirs={"--out": args.out})
    device, dtype = _device_and_dtype(args)
    videos = [Path(p) for p in args.inputs if Path(p).suffix.lower() in VIDEO_EXTENSIONS]
    images = [p for p in args.inputs if Path(p).suffix.lower() not in VIDEO_EXTENSIONS]
    if args.frames and not videos:
        raise FcnsegError("--frames writes a video's label maps as PNGs; no video was given")
    model = _load_model(args.checkpoint, device, args.geometry, args.fast)
    options = _segment_options(args, dtype)
    options["preprocess"] = normalizer_for(model, source=args.checkpoint)
    code = _predict_videos(model, videos, args, options) if videos else 0
    if images or not videos:
        code = max(code, _predict_images(model, images, args, options))
    return code


def _predict_images(
    model: torch.nn.Module, images: list, args: argparse.Namespace, options: dict
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
        **options,
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
    model: torch.nn.Module, videos: list[Path], args: argparse.Namespace, options: dict
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
            **options,
        )
        print(
            f"{video}: {result.frames} frames at {float(result.fps):.3g} fps, "
            f"{result.size[0]} x {result.size[1]}; wrote "
            + ", ".join(str(p) for p in result.written)
        )
    return 0


def _add_speed_options(command: argparse.ArgumentParser) -> None:
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


def _add_eval_and_predict(commands: argparse._SubParsersAction) -> None:
    from fcnseg.data import DATASET_NAMES

    evaluate = commands.add_parser(
        "eval",
        help="score a checkpoint on a dataset split (pixel acc, mean acc, mean IU, f.w. IU)",
        description="Score whole images one at a time; print the four metrics and a per-class "
        "table; optionally write them as JSON and the row-normalised confusion matrix as PNG.",
    )
    evaluate.add_argument("--checkpoint", required=True, help="fcnseg model file (.pt)")
    evaluate.add_argument(
        "--dataset", required=True, help=f"dataset reader: {', '.join(DATASET_NAMES)}"
    )
    evaluate.add_argument("--root", default=None, help="the dataset's folder (not for synthetic)")
    evaluate.add_argument("--split", required=True, help="e.g. val, test, seg11valid")
    evaluate.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option, repeatable (e.g. year=2012, target=semantic, voc_root=PATH)",
    )
    evaluate.add_argument("--json", default=None, metavar="PATH", help="write the metrics here")
    evaluate.add_argument(
        "--figure",
        default=None,
        metavar="PATH",
        help="confusion-matrix PNG (default with --json: <json stem>_confusion.png beside it)",
    )
    _add_speed_options(evaluate)
    evaluate.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="first N images"
    )
    evaluate.set_defaults(run=cmd_eval)

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
    _add_speed_options(predict)
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
    tta = predict.add_argument_group("test-time augmentation")
    tta.add_argument(
        "--tta", nargs="*", default=[], choices=["flip"], help="also score mirrored images"
    )
    tta.add_argument(
        "--scales",
        nargs="+",
        type=float,
        default=[1.0],
        metavar="S",
        help="average over these scales (e.g. 0.75 1 1.25), on top of the net's input scale",
    )
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

    demo = commands.add_parser("demo", help="train an FCN-8s on generated shapes and score it")
    demo.add_argument("--seed", type=nonnegative_int, default=0)
    demo.add_argument("--iterations", type=positive_int, default=500)
    demo.add_argument(
        "--width", type=positive_float, default=0.125, help="VGG16 channel multiplier"
    )
    demo.add_argument("--out", default="demo-out", help="folder for the figure and the model")
    demo.add_argument("--json", default=None, metavar="PATH", help="write the figures as JSON")
    demo.set_defaults(run=cmd_demo)
    _add_train(commands)
    _add_eval_and_predict(commands)
    _add_models(commands)
    _add_interop(commands)
    _add_hub(commands)
    return parser


def cmd_models(args: argparse.Namespace) -> int:
    from fcnseg.models.zoo import format_table, table

    print(format_table(table(size=args.size, archs=args.arch)))
    return 0


def _add_models(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models", help="list every net: parameters, receptive field, strides, GFLOPs"
    )
    models.add_argument(
        "--size", type=positive_int, default=500, help="square input side for GFLOPs"
    )
    models.add_argument("--arch", nargs="+", default=None, help="only these nets")
    models.set_defaults(run=cmd_models)


# --------------------------------------------------------------------------- import-caffe, export


def cmd_import_caffe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    try:
        from fcnseg.data.folder import read_classes_file
        from fcnseg.interop.caffe_import import convert_caffemodel
    except ImportError as error:  # protobuf missing
        print(f"fcnseg import-caffe: error: {error}", file=sys.stderr)
        return 2
    _check_outputs(files={"--out": args.out, "--json": args.json})
    report = convert_caffemodel(
        args.model,
        args.out,
        arch=args.arch,
        num_classes=args.num_classes,
        head=args.head,
        tower=args.tower,
        dataset=args.dataset,
        classes=read_classes_file(Path(args.classes))[0] if args.classes else None,
        modality=args.modality,
    )
    print(report.format())
    _write_json(args.json, asdict(report))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fcnseg.checkpoint import load
    from fcnseg.interop.export import ExportError, export_onnx, export_torchscript, verify_onnx

    if not args.onnx and not args.torchscript:
        raise FcnsegError("nothing to write: give --onnx PATH and/or --torchscript PATH")
    _check_outputs(files={"--onnx": args.onnx, "--torchscript": args.torchscript})
    model = load(args.checkpoint)
    try:
        if args.onnx:
            dynamo = args.onnx_exporter == "dynamo"
            path = export_onnx(model, args.onnx, opset=args.opset, dynamo=dynamo, verify=False)
            print(f"wrote {path} (ONNX, {args.onnx_exporter} exporter, dynamic N, H, W)")
            if not args.no_verify:
                error = verify_onnx(path, model)
                print(
                    "  not checked: onnxruntime is not installed"
                    if error is None
                    else f"  onnxruntime matches the model (relative error {error:.1g})"
                )
        if args.torchscript:
            path = export_torchscript(model, args.torchscript, verify=not args.no_verify)
            checked = "" if args.no_verify else "; matches the model at several sizes"
            print(f"wrote {path} (TorchScript, traced{checked})")
    except ExportError as error:
        print(f"fcnseg export: error: {error}", file=sys.stderr)
        return 1
    return 0


def _add_interop(commands: argparse._SubParsersAction) -> None:
    imports = commands.add_parser(
        "import-caffe",
        help="convert an original FCN .caffemodel into an fcnseg checkpoint (no Caffe needed)",
        description="Read a .caffemodel (either layout), infer the net (fcn32s, fcn16s, fcn8s, "
        "fcn8s_atonce, fcn_alexnet; classes, input channels) from its layer names and shapes, "
        "fill it and save it with the reference preprocessing. Prints what was inferred and "
        "what was left out. The .prototxt is not needed.",
        epilog="exit status: 0 written; 2 unreadable file or a net that does not fit.",
    )
    imports.add_argument("model", metavar="MODEL.caffemodel")
    imports.add_argument("--out", required=True, metavar="PATH", help="checkpoint to write (.pt)")
    imports.add_argument("--arch", default=None, help="default: inferred (needed for classifiers)")
    imports.add_argument(
        "--num-classes",
        type=positive_int,
        default=None,
        metavar="K",
        help="default: score_fr's (needed for classifiers)",
    )
    imports.add_argument(
        "--dataset",
        default=None,
        choices=("voc", "sbd", "context", "nyud", "siftflow"),
        help="record its class names and the reference's input mean",
    )
    imports.add_argument("--classes", default=None, metavar="FILE", help="class names, one a line")
    imports.add_argument("--head", default=None, help="SIFT Flow: sem (default) or geo")
    imports.add_argument("--tower", default=None, help="NYUDv2 late fusion: color or hha")
    imports.add_argument(
        "--modality", default=None, choices=("rgb", "hha", "rgbd"), help="NYUDv2 input"
    )
    imports.add_argument("--json", default=None, metavar="PATH", help="write the report as JSON")
    imports.set_defaults(run=cmd_import_caffe)

    export = commands.add_parser(
        "export",
        help="write a checkpoint as ONNX and/or TorchScript (dynamic batch, height, width)",
        description="The files take the preprocessed image (input 'image', N x C x H x W) and "
        "give class scores ('scores', N x K x H x W); the checkpoint's metadata rides along. "
        "Each file is checked against the model at several sizes.",
        epilog="exit status: 0 written; 1 export failed or disagrees with the model; 2 bad "
        "arguments or checkpoint.",
    )
    export.add_argument("--checkpoint", required=True, help="fcnseg model file (.pt)")
    export.add_argument("--onnx", default=None, metavar="PATH", help="ONNX file to write")
    export.add_argument("--torchscript", default=None, metavar="PATH", help="TorchScript file")
    export.add_argument(
        "--opset", type=positive_int, default=None, help="ONNX opset (default: torch's)"
    )
    export.add_argument(
        "--onnx-exporter",
        choices=("dynamo", "legacy"),
        default="dynamo",
        help="torch.export-based (default; needs onnxscript) or the legacy TorchScript-based",
    )
    export.add_argument("--no-verify", action="store_true", help="skip the parity checks")
    export.set_defaults(run=cmd_export)


# --------------------------------------------------------------------------- weights, download


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


def _add_hub(commands: argparse._SubParsersAction) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
