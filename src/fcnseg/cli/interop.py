"""``fcnseg models``, ``fcnseg import-caffe``, ``fcnseg export`` and ``fcnseg ensemble``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcnseg.cli.options import (
    check_outputs,
    positive_int,
    write_json,
)
from fcnseg.errors import (
    FcnsegError,
)


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


def cmd_import_caffe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    try:
        from fcnseg.data.folder import read_classes_file
        from fcnseg.interop.caffe_import import convert_caffemodel
    except ImportError as error:  # protobuf missing
        print(f"fcnseg import-caffe: error: {error}", file=sys.stderr)
        return 2
    check_outputs(files={"--out": args.out, "--json": args.json})
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
    write_json(args.json, asdict(report))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fcnseg.checkpoint import load
    from fcnseg.interop.export import ExportError, export_onnx, export_torchscript, verify_onnx

    if not args.onnx and not args.torchscript:
        raise FcnsegError("nothing to write: give --onnx PATH and/or --torchscript PATH")
    check_outputs(files={"--onnx": args.onnx, "--torchscript": args.torchscript})
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


def cmd_ensemble(args: argparse.Namespace) -> int:
    from fcnseg.checkpoint import ensemble, save

    check_outputs(files={"--out": args.out})
    model = ensemble(args.checkpoints)
    path = save(model, args.out)
    count = sum(p.numel() for p in model.parameters())
    inputs = ", each on its own preprocessing" if model.split_input else ""
    print(
        f"wrote {path}: the mean probability of {len(args.checkpoints)} nets{inputs} "
        f"({count:,} weights)"
    )
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

    ensemble = commands.add_parser(
        "ensemble",
        help="save several trained nets as one, scoring the mean of their probabilities",
        description="Combine checkpoints of nets that share their classes and input scale, "
        "e.g. runs of one recipe from other seeds or with other preprocessing, into one model "
        "file. Members trained with different preprocessing each get the image normalised "
        "their way (the file's preprocessing is then a ConcatNormalize of theirs). "
        "eval, predict, export and fcnseg.segment take it as any net: its scores are the log "
        "of the members' mean softmax, and it costs each member's time. Its metadata (palette, "
        "test-time augmentation) is the first checkpoint's.",
        epilog="exit status: 0 written; 2 unreadable or mismatched checkpoints, bad --out.",
    )
    ensemble.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="two or more")
    ensemble.add_argument("--out", required=True, metavar="PATH", help="model file to write")
    ensemble.set_defaults(run=cmd_ensemble)


def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_models(commands)
    _add_interop(commands)
