"""``fcnseg eval``: the four metrics of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tqdm import tqdm

from fcnseg.cli import options
from fcnseg.cli.options import (
    add_speed_options,
    check_outputs,
    dataset_options,
    device_and_dtype,
    positive_int,
    write_json,
)
from fcnseg.errors import (
    FcnsegError,
    InputNotFoundError,
)
from fcnseg.evaluate.metrics import format_heads_report, format_report, labelled_mean_iu


def cmd_eval(args: argparse.Namespace) -> int:
    from fcnseg.data import open_dataset
    from fcnseg.evaluate.scoring import (
        check_compatible,
        confusion_matrix_figure,
        evaluate,
        metrics_json,
    )
    from fcnseg.inference.predict import heads_of, normalizer_for
    from fcnseg.models import settings_of
    from fcnseg.runtime import canonical_precision

    check_outputs(files={"--json": args.json, "--figure": args.figure})
    if args.figure is None and args.json:  # the default figure beside the JSON
        check_outputs(
            files={"--json": Path(args.json).with_name(f"{Path(args.json).stem}_confusion.png")}
        )
    device, dtype = device_and_dtype(args)
    reader_options = dataset_options(args.option)
    if args.limit is not None and args.limit < 1:
        raise FcnsegError(f"--limit must be >= 1, got {args.limit}")
    model = options.load_model(args.checkpoint, device, args.geometry, args.fast)
    heads = heads_of(model)
    if heads and args.dataset == "siftflow":
        reader_options.setdefault("target", "both")  # the two-headed net scores both labellings
    root = Path(args.root or "")
    if args.dataset != "synthetic" and (args.root is None or not root.is_dir()):
        raise InputNotFoundError(f"--root {args.root}: dataset folder not found")
    dataset = open_dataset(args.dataset, root, args.split, **reader_options)
    check_compatible(model, dataset, source=args.checkpoint)
    preprocess = normalizer_for(model, source=args.checkpoint)
    augmentation = options.augmentation_from(args, model)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    print(
        f"fcnseg eval: {args.checkpoint} on {args.dataset} {args.split} "
        f"({count} of {len(dataset)} images) on {device}, {canonical_precision(args.precision)}"
        + (", fast layers" if args.fast else "")
        + (f", {args.geometry} geometry" if args.geometry else "")
        + f", test-time augmentation: {augmentation}"
    )
    matrix = evaluate(
        model,
        dataset,
        device=device,
        progress=lambda total: tqdm(total=total, desc="eval", unit="img"),
        preprocess=preprocess,
        limit=args.limit,
        dtype=dtype,
        augmentation=augmentation,
    )
    if isinstance(matrix, dict):  # a two-headed net: one matrix per head
        names = {"semantic": list(dataset.classes)}
        for head in list(matrix)[1:]:
            names[head] = list(getattr(dataset, f"{head}_classes", range(heads[head])))
        by_head = {head: counts.compute() for head, counts in matrix.items()}
        print(format_heads_report(by_head, names))
        matrices, metrics = matrix, by_head
        matrix = next(iter(matrices.values()))  # the main head's: the figure and the top
    else:
        names, metrics = None, matrix.compute()
        print(format_report(metrics, dataset.classes))
    extra = {
        "checkpoint": str(args.checkpoint),
        "dataset": args.dataset,
        "root": str(root),
        "split": args.split,
        "options": reader_options,
        "images": count,
        "ignore_index": dataset.ignore_index,
        "precision": canonical_precision(args.precision),
        "fast": args.fast,
        "geometry": settings_of(model).get("geometry"),
        "test_time_augmentation": augmentation.to_dict(),
    }
    if names is None:
        payload = metrics_json(metrics, dataset.classes, extra)
    else:  # the main head's metrics at the top, as for one head; each other head under its name
        main, *others = metrics
        payload = metrics_json(metrics[main], names[main], extra)
        labelled = labelled_mean_iu(metrics[main])  # the paper's Table 5 mean IU
        payload["mean_iu_labelled"] = None if math.isnan(labelled) else labelled
        for head in others:
            payload[head] = metrics_json(metrics[head], [str(n) for n in names[head]])
            payload[head]["confusion_matrix"] = matrices[head].matrix.cpu().tolist()
    payload["confusion_matrix"] = matrix.matrix.cpu().tolist()  # n_ij: true i, predicted j
    write_json(args.json, payload)
    figure = args.figure
    if figure is None and args.json:
        figure = Path(args.json).with_name(f"{Path(args.json).stem}_confusion.png")
    if figure is not None:
        print(f"wrote {confusion_matrix_figure(matrix, dataset.classes, figure)}")
    return 0


def _add_eval(commands: argparse._SubParsersAction) -> None:
    from fcnseg.data import DATASET_NAMES

    evaluate = commands.add_parser(
        "eval",
        help="score a checkpoint on a dataset split (pixel acc, mean acc, mean IU, f.w. IU)",
        description="Score whole images one at a time (with the test-time augmentation the "
        "checkpoint records, unless --tta/--scales say otherwise); print the four metrics and a "
        "per-class table; optionally write them as JSON and the row-normalised confusion matrix "
        "as PNG.",
    )
    evaluate.add_argument("--checkpoint", required=True, help="fcnseg model file (.pt)")
    evaluate.add_argument(
        "--dataset", required=True, help=f"dataset reader: {', '.join(DATASET_NAMES)}"
    )
    evaluate.add_argument("--root", default=None, help="the dataset's folder (not for synthetic)")
    evaluate.add_argument("--split", required=True, help="e.g. val, test, seg11valid")
    evaluate.add_argument(
        "--option",
        "--options",  # as `fcnseg train` spells it
        dest="option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option, repeatable (e.g. year=2012, target=semantic, voc_root=PATH);"
        " --options is the same flag",
    )
    evaluate.add_argument("--json", default=None, metavar="PATH", help="write the metrics here")
    evaluate.add_argument(
        "--figure",
        default=None,
        metavar="PATH",
        help="confusion-matrix PNG (default with --json: <json stem>_confusion.png beside it)",
    )
    add_speed_options(evaluate)
    options.add_tta_options(evaluate)
    evaluate.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="first N images"
    )
    evaluate.set_defaults(run=cmd_eval)


def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_eval(commands)
