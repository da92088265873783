"""Confusion-matrix counting per 500x500 label-map pair: ours against numpy and torchfcn.

Rows: torchfcn's ``label_accuracy_score`` (re-implemented faithfully in ``torchfcn_port.py``; the
peers venv times the imported one), a plain numpy ``bincount``, ``ConfusionMatrix.update``
and ``fcnseg.evaluate.metrics.confusion_counts`` with each counter (``torch.bincount``; the compiled
loop of ``fcnseg.evaluate.pair_counts`` where numba is installed); each with its speed-up over the
first two, the median of per-round ratios (the ways take turns, ``--rounds`` times). Two pairs
of maps: pixel noise and block regions (``speed_rows.label_maps``). Our labels are uint8 as a
data loader gives them, the others' int64; the target's top rows are ignore (255).
glibc is told to keep freed memory (``common.steady_malloc``): in a fresh process numpy's
megabyte temporaries otherwise fault in new pages on every call, which makes it look 4x
slower than it is in a long-running evaluation.

    python benchmarks/bench_metrics.py [--size 500x500] [--classes 21] [--repeats 50]
        [--rounds 7] [--maps noise regions] [--threads N] [--json benchmarks/results/metrics.json]
"""

from __future__ import annotations

import argparse

import torch
from common import print_table, steady_malloc, write_json
from speed_rows import LABEL_MAPS, metrics_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="500x500")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--maps", nargs="+", choices=LABEL_MAPS, default=list(LABEL_MAPS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default="benchmarks/results/metrics.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steady = steady_malloc()  # page faults on fresh temporaries would slow numpy the most
    size = tuple(int(v) for v in args.size.split("x"))
    rows = metrics_rows(size, args.classes, args.repeats, args.rounds, args.maps)
    print_table(rows, ["impl", "maps", "size", "ms", "x vs torchfcn", "x vs numpy"])
    write_json(args.json, "metrics", rows, steady_malloc=steady, args=vars(args))


if __name__ == "__main__":
    main()
