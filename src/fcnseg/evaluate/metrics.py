"""The paper's four metrics (section 5), all from one confusion matrix.

With n_ij the pixels of class i predicted as class j, t_i = sum_j n_ij the pixels of class i
and k the number of classes (Long et al., section 5):

- pixel accuracy           sum_i n_ii / sum_i t_i
- mean accuracy            (1/k) sum_i n_ii / t_i
- mean IU                  (1/k) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
- frequency weighted IU    (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

As in the reference ``score.py``, one matrix is accumulated over the whole dataset (not an
average of per-image scores), and means skip undefined terms (numpy's ``nanmean``): a class
with no labelled pixels is left out of the mean accuracy, and a class that is neither
labelled nor predicted is left out of the mean IU. Per-class lists hold ``nan`` for them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fcnseg.evaluate import pair_counts


class ConfusionMatrix:
    """Accumulates ``n_ij`` over a dataset; pixels labelled ``ignore_index`` are skipped.

    ``update`` runs with torch on the device its tensors live on; the matrix moves there too.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` integer tensors of the same shape (any shape).

        Target values must be classes (0 .. num_classes - 1) or the ignore index; predictions
        must be classes.
        """
        counts = confusion_counts(pred, target, self.num_classes, self.ignore_index)
        if self.matrix.device != counts.device:
            self.matrix = self.matrix.to(counts.device)
        self.matrix += counts

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (e.g. from another process)."""
        self.matrix += other.matrix.to(self.matrix.device)

    def compute(self) -> dict[str, float | list[float]]:
        """The four metrics and the per-class lists ``acc`` and ``iu`` (``nan`` if undefined).

        Everything is ``nan`` when no pixel has been counted.
        """
        hist = self.matrix.double().cpu()
        diag = hist.diag()
        labelled = hist.sum(1)  # t_i
        predicted = hist.sum(0)
        union = labelled + predicted - diag
        total = labelled.sum()
        acc = diag / labelled  # nan where t_i = 0
        iu = diag / union  # nan where class i is neither labelled nor predicted
        freq = labelled / total
        valid_iu = ~iu.isnan()
        return {
            "pixel_acc": _item(diag.sum() / total),
            "mean_acc": _item(acc.nanmean()),
            "mean_iu": _item(iu.nanmean()),
            "fw_iu": _item((freq[valid_iu] * iu[valid_iu]).sum()) if total > 0 else math.nan,
            "acc": acc.tolist(),
            "iu": iu.tolist(),
        }


# Most bins a count may use: (rows of target values) x classes. Past it (a target holding
# values far apart, e.g. an ignore index of -10**6) the ignored pixels are masked out first.
MAX_BINS = 1 << 22


def confusion_counts(
    pred: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    compiled: bool | None = None,
) -> Tensor:
    """Confusion matrix (K, K) int64 of one batch, ``n[i, j]`` = pixels of class i predicted j.

    CPU tensors are counted by :func:`fcnseg.evaluate.pair_counts.confusion_table` when numba is
    installed (``compiled=None``; ``True`` insists on it, ``False`` never). Otherwise, and to
    name the values when a label is invalid: one ``bincount`` over the pair index
    ``K (t - t0) + p`` takes every pixel, ignored and invalid ones included, into a table with
    one row per target value from ``t0 = min(t, 0)`` to ``max(t, K - 1)``: the rows of the
    classes are the matrix, the ignore index's row is dropped and any other non-empty row
    names an invalid target value. So no mask is built and nothing is gathered; the index is
    int16 when it fits. Raises ValueError on values that are not classes (or the ignore
    index, for targets).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError("pred and target must be integer tensors (class indices)")
    k = num_classes
    target = target.reshape(-1)
    pred = pred.reshape(-1).to(target.device)
    if not pred.numel():
        return torch.zeros(k, k, dtype=torch.int64, device=target.device)
    if ignore_index is not None and 0 <= ignore_index < k:  # a class set aside
        return _confusion_counts_masked(pred, target, k, ignore_index)
    if _use_compiled(compiled, target):
        counted = pair_counts.confusion_table(
            target.contiguous().numpy(), pred.contiguous().numpy(), k, ignore_index
        )
        if counted is not None:
            table, ignored = counted
            if int(table[k].sum()) == ignored:  # every target past the classes is ignored
                return torch.from_numpy(table[:k])
        # an invalid or negative value: the general count below names it (or counts it)
    low, high = (int(v) for v in torch.aminmax(target))
    first, last = min(low, 0), max(high, k - 1)  # target values of the table's rows
    rows = last - first + 1
    if rows * k > MAX_BINS:
        return _confusion_counts_masked(pred, target, k, ignore_index)
    _check_predictions(pred, k)
    table = _count_pairs_bincount(target, pred, first, rows, k)
    if rows > k:  # values beyond the classes: only the ignore index may hold pixels
        counted = table.sum(1)
        counted[-first : k - first] = 0  # the classes' rows
        if ignore_index is not None and first <= ignore_index <= last:
            counted[ignore_index - first] = 0
        if bool(counted.any()):
            bad = (counted.nonzero().flatten() + first)[:8].tolist()
            raise ValueError(
                f"target values {bad} are not classes 0..{k - 1} nor ignore ({ignore_index})"
            )
    return table[-first : k - first]


def _check_predictions(pred: Tensor, k: int) -> None:
    low, high = (int(v) for v in torch.aminmax(pred))
    if low < 0 or high >= k:
        bad = pred[(pred < 0) | (pred >= k)].unique()[:8].tolist()
        raise ValueError(f"predicted values {bad} are not classes 0..{k - 1}")


def _use_compiled(compiled: bool | None, target: Tensor) -> bool:
    if compiled is None:
        return target.device.type == "cpu" and pair_counts.available()
    if compiled and target.device.type != "cpu":
        raise ValueError(f"compiled=True counts on the CPU; the labels are on {target.device}")
    if compiled and not pair_counts.available():
        raise ImportError('compiled=True needs numba (pip install "fcnseg[fast]")')
    return compiled


def _count_pairs_bincount(target: Tensor, pred: Tensor, first: int, rows: int, k: int) -> Tensor:
    """Table (rows, k): entry [t - first, p] counts the pixels with target t, prediction p."""
    index_dtype = torch.int16 if rows * k <= torch.iinfo(torch.int16).max else torch.int32
    shifted = target if first == 0 else target - first  # values 0 .. rows - 1, any int dtype
    index = pred.to(index_dtype, copy=True).add_(shifted.to(index_dtype), alpha=k)  # k t + p
    return torch.bincount(index, minlength=rows * k).view(rows, k)


def _confusion_counts_masked(
    pred: Tensor, target: Tensor, k: int, ignore_index: int | None
) -> Tensor:
    """:func:`confusion_counts` for targets whose values span too many rows, or whose ignore
    index is a class: the ignored pixels are set aside with a mask, the rest must be classes."""
    _check_predictions(pred, k)
    keep = (
        target != ignore_index
        if ignore_index is not None
        else torch.ones_like(target, dtype=torch.bool)
    )
    labelled = target[keep]
    if labelled.numel() and (int(labelled.min()) < 0 or int(labelled.max()) >= k):
        bad = labelled[(labelled < 0) | (labelled >= k)].unique()[:8].tolist()
        raise ValueError(
            f"target values {bad} are not classes 0..{k - 1} nor ignore ({ignore_index})"
        )
    index = labelled.long() * k + pred[keep].long()
    return torch.bincount(index, minlength=k * k).view(k, k)


def _item(value: Tensor) -> float:
    return float(value)


def format_report(metrics: dict, classes: list[str] | None = None) -> str:
    """The four metrics and a per-class accuracy / IU table, as text."""
    lines = [
        f"pixel acc {metrics['pixel_acc']:.4f}   mean acc {metrics['mean_acc']:.4f}   "
        f"mean IU {metrics['mean_iu']:.4f}   f.w. IU {metrics['fw_iu']:.4f}",
    ]
    names = classes or [str(i) for i in range(len(metrics["iu"]))]
    width = max(len("class"), *(len(n) for n in names))
    lines.append(f"{'class':<{width}}  {'acc':>6}  {'IU':>6}")
    for name, acc, iu in zip(names, metrics["acc"], metrics["iu"]):
        lines.append(f"{name:<{width}}  {_cell(acc)}  {_cell(iu)}")
    return "\n".join(lines)


def format_heads_report(
    metrics: dict[str, dict], classes: dict[str, list[str] | None] | None = None
) -> str:
    """A several-headed net's metrics in the paper's Table 5 form, then each head's table.

    ``metrics``: ``{head: compute() dict}``, the main (semantic) head first. The first line is
    the paper's row: the main head's four metrics and every other head's pixel accuracy, in
    percent (``geom. acc.`` for the geometric head).
    """
    main, *others = metrics
    row = metrics[main]
    cells = [
        f"pixel acc. {_percent(row['pixel_acc'])}",
        f"mean acc. {_percent(row['mean_acc'])}",
        f"mean IU {_percent(row['mean_iu'])}",
        f"f.w. IU {_percent(row['fw_iu'])}",
    ]
    cells += [
        f"{'geom.' if head == 'geometric' else head} acc. {_percent(metrics[head]['pixel_acc'])}"
        for head in others
    ]
    lines = ["  ".join(cells)]
    for head, values in metrics.items():
        names = (classes or {}).get(head)
        lines += ["", f"{head} ({len(values['iu'])} classes)", format_report(values, names)]
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def _cell(value: float) -> str:
    return "     -" if math.isnan(value) else f"{value:6.4f}"
