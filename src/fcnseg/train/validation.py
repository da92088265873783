"""Validation during training: a net scored on a split as ``fcnseg eval`` scores it, and the
``metrics.jsonl`` line that records it.

:func:`validate` runs :func:`fcnseg.evaluate.scoring.score` on each process's shard of the
split and sums the confusion matrices over processes, so the mean IU that picks ``best.pt`` is
the one ``fcnseg eval`` prints for it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from fcnseg.data.common import SegmentationDataset
from fcnseg.data.transforms import Normalizer
from fcnseg.evaluate.scoring import score
from fcnseg.train import distributed
from fcnseg.train.distributed import Processes

METRICS = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")


def validate(
    model: nn.Module,
    dataset: SegmentationDataset,
    preprocess: Normalizer,
    scale: float = 1.0,
    dtype: torch.dtype | None = None,
    processes: Processes | None = None,
    limit: int = 0,
    num_workers: int = 0,
) -> dict[str, Any]:
    """The four metrics of ``model`` on (the first ``limit`` of) ``dataset``'s raw images, by
    :func:`fcnseg.evaluate.scoring.score` (what ``fcnseg eval`` runs on a checkpoint): each
    process scores every ``world_size``-th image and the confusion matrices are summed.

    A net with several heads (SIFT Flow's semantic and geometric) is scored per head against
    (heads, H, W) labels: the first head's metrics under the usual keys, every other head's
    prefixed with its name (``geometric_pixel_acc``, ..., ``geometric_iu``)."""
    processes = processes or Processes()
    count = min(len(dataset), limit) if limit else len(dataset)
    shard = range(processes.rank, count, processes.world_size)
    scored = score(model, dataset, preprocess, scale, dtype, shard, num_workers)
    if not isinstance(scored, dict):
        distributed.all_reduce_sum(scored.matrix, processes)
        return scored.compute()
    main, *others = scored
    for matrix in scored.values():
        distributed.all_reduce_sum(matrix.matrix, processes)
    metrics = scored[main].compute()
    for head in others:
        metrics.update({f"{head}_{key}": value for key, value in scored[head].compute().items()})
    return metrics


def _plain(value: Any) -> Any:
    """Metrics for JSON: nan becomes None."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def validation_record(
    iteration: int, metrics: dict[str, Any], heads: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The ``metrics.jsonl`` line of a validation: the four metrics and the per-class IU (a
    list), with every head's after the first prefixed by its name; nan written as null."""
    record: dict[str, Any] = {"iteration": iteration, "split": "val"}
    for prefix in ("", *(f"{head}_" for head in heads[1:])):
        record.update({prefix + k: _plain(metrics[prefix + k]) for k in (*METRICS, "iu")})
    return record
