"""The ``fcnseg`` command: subcommands over the library. Only this module parses, prints, exits."""

from __future__ import annotations

import argparse
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


def image_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``360x480``), both >= 1."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected HxW with H, W >= 1 (e.g. 360x480), got {text!r}"
        )
    return int(parts[0]), int(parts[1])


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
        config, out_dir=args.out, progress=lambda total: tqdm(total=total, desc="train", unit="it")
    )
    print(f"trained in {result.seconds:.0f} s; final loss {result.losses[-1]:.4f}")
    print(f"held-out images: {config.val_images}")
    print(format_report(result.metrics, result.classes))
    print(f"wrote {Path(args.out) / 'demo_grid.png'} and {Path(args.out) / 'demo_fcn8s.pt'}")
    _write_json(args.json, result.to_json())
    return 0


# --------------------------------------------------------------------------- train

_KIND_METAVARS = {"str": "TEXT", "int": "N", "float": "X", "floats": "X,X", "ints": "N,N"}


def cmd_train(args: argparse.Namespace) -> int:
    from fcnseg.train import launched_rank, train
    from fcnseg.train.recipe import FIELDS, Recipe, load

    main_process = launched_rank() == 0
    given = {f.name: getattr(args, f"key_{f.name}") for f in FIELDS}
    given = {name: value for name, value in given.items() if value is not None}
    path = args.recipe
    if path is None and args.resume:
        if "out" not in given:
            raise FcnsegError("--resume needs --out (the folder of the run to continue)")
        path = Path(given["out"]) / "recipe.toml"
    recipe = (load(path) if path else Recipe()).replace(source="command line", **given)
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

DEVICES = ("auto", "cpu", "cuda")
INT_OPTIONS = ("ignore_index",)  # dataset options that are numbers; all others stay strings


def _pick_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FcnsegError("--device cuda: CUDA is not available here; use --device cpu or auto")
    return torch.device(name)


def _load_model(path: str, device: torch.device, geometry: str | None = None) -> torch.nn.Module:
    """``checkpoint.load`` onto ``device``; a load error keeps only its first line (torch's
    unpickling errors run to many lines), which names the file."""
    from fcnseg.checkpoint import CheckpointError, load

    try:
        return load(path, geometry=geometry).to(device)
    except CheckpointError as error:
        raise CheckpointError(str(error).strip().splitlines()[0]) from None


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


def _precision(name: str, device: torch.device) -> torch.dtype | None:
    """``--precision`` as an autocast dtype (None: float32); fp16 only on CUDA."""
    from fcnseg.inference.fast import PRECISIONS

    if name == "fp16" and device.type != "cuda":
        raise FcnsegError("--precision fp16 needs --device cuda; use bf16 on the CPU")
    return PRECISIONS[name]


def cmd_eval(args: argparse.Namespace) -> int:
    from fcnseg.data import open_dataset
    from fcnseg.evaluate.scoring import (
        check_compatible,
        confusion_matrix_figure,
        evaluate,
        metrics_json,
    )
    from fcnseg.inference.predict import normalizer_for

    _check_outputs(files={"--json": args.json, "--figure": args.figure})
    if args.figure is None and args.json:  # the default figure beside the JSON
        _check_outputs(
            files={"--json": Path(args.json).with_name(f"{Path(args.json).stem}_confusion.png")}
        )
    device = _pick_device(args.device)
    dtype = _precision(args.precision, device)
    options = _dataset_options(args.option)
    if args.limit is not None and args.limit < 1:
        raise FcnsegError(f"--limit must be >= 1, got {args.limit}")
    model = _load_model(args.checkpoint, device, args.geometry)
    root = Path(args.root)
    if not root.is_dir():
        raise InputNotFoundError(f"--root {root}: dataset folder not found")
    try:
        dataset = open_dataset(args.dataset, root, args.split, **options)
    except TypeError as error:  # an option the reader does not take
        raise FcnsegError(f"dataset {args.dataset!r} rejects --option {options}: {error}") from None
    check_compatible(model, dataset, source=args.checkpoint)
    preprocess = normalizer_for(model, source=args.checkpoint)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    print(
        f"fcnseg eval: {args.checkpoint} on {args.dataset} {args.split} "
        f"({count} of {len(dataset)} images) on {device}, {args.precision}"
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
        "precision": args.precision,
        "geometry": getattr(model, "settings", {}).get("geometry"),
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


def cmd_predict(args: argparse.Namespace) -> int:
    from fcnseg.inference.predict import normalizer_for, predict_files

    _check_outputs(dirs={"--out": args.out})
    device = _pick_device(args.device)
    dtype = _precision(args.precision, device)
    model = _load_model(args.checkpoint, device, args.geometry)
    result = predict_files(
        model,
        args.inputs,
        args.out,
        preprocess=normalizer_for(model, source=args.checkpoint),
        alpha=args.alpha,
        progress=lambda total: tqdm(total=total, desc="predict", unit="img"),
        dtype=dtype,
    )
    print(f"wrote {len(result.written)} label maps and overlays to {args.out}")
    for _, message in result.failed:
        print(f"fcnseg predict: error: {message}", file=sys.stderr)
    if result.failed:
        total = len(result.written) + len(result.failed)
        print(f"fcnseg predict: {len(result.failed)} of {total} images failed", file=sys.stderr)
        return 1
    return 0


def _add_speed_options(command: argparse.ArgumentParser) -> None:
    from fcnseg.inference.fast import PRECISIONS
    from fcnseg.models import GEOMETRIES

    command.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="fp32",
        help="arithmetic of the net: fp32, or autocast to bf16 (CPU/GPU) or fp16 (GPU)",
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
    evaluate.add_argument("--root", required=True, help="the dataset's folder")
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
    evaluate.add_argument("--device", choices=DEVICES, default="auto")
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
        "OUT/<stem>_overlay.png. Two inputs that would write the same name are an error, "
        "checked before anything is written.",
        epilog="exit status: 0 all written; 1 some images could not be read (each named on "
        "stderr, the others written); 2 bad arguments, checkpoint or inputs (nothing written).",
    )
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--checkpoint", required=True, help="fcnseg model file (.pt)")
    predict.add_argument("--out", required=True, metavar="DIR", help="output folder")
    predict.add_argument("--device", choices=DEVICES, default="auto")
    _add_speed_options(predict)
    predict.add_argument(
        "--alpha", type=fraction, default=0.5, help="colour share of the overlay, 0..1"
    )
    predict.set_defaults(run=cmd_predict)


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
    _add_bench(commands)
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    from fcnseg.bench import run

    _check_outputs(files={"--json": args.json})
    sizes = list(args.sizes)
    result = run(args.nets, sizes, args.repeats, quick=args.quick, net_width=args.width)
    columns = ["kind", "impl", "net", "variant", "size", "batch", "ms", "img/s", "GFLOP/s"]
    metric_columns = ["kind", "impl", "maps", "size", "ms", "x vs torchfcn", "x vs numpy"]
    print(f"matmul {result['matmul GFLOP/s']:.1f} GFLOP/s, {result['threads']} threads")
    for row in result["rows"]:
        cells = [row.get(c, "-") for c in (metric_columns if row["kind"] == "metrics" else columns)]
        print("  ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in cells))
    _write_json(args.json, result)
    return 0


def _add_bench(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="time our nets' forward, training step and metrics (see benchmarks/)"
    )
    bench.add_argument(
        "--nets",
        nargs="+",
        choices=("fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"),  # the VGG16 nets: two geometries
        default=["fcn32s", "fcn16s", "fcn8s"],
    )
    bench.add_argument(
        "--sizes", nargs="+", type=image_size, default=[(500, 500), (360, 480)], metavar="HxW"
    )
    bench.add_argument("--repeats", type=positive_int, default=5)
    bench.add_argument("--width", type=positive_float, default=1.0, help="VGG16 channel multiplier")
    bench.add_argument("--quick", action="store_true", help="batch 1, fewer variants")
    bench.add_argument("--json", default=None, metavar="PATH", help="write the rows as JSON")
    bench.set_defaults(run=cmd_bench)


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
        from fcnseg.interop.caffe_import import convert_caffemodel, read_classes_file
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
        classes=read_classes_file(args.classes) if args.classes else None,
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
