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


def confusion_counts(
    pred: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    compiled: bool | None = None,
) -> Tensor:
    """Confusion matrix (K, K) int64 of one batch, ``n[i, j]`` = pixels of class i predicted j.

    One decision, in :func:`_use_compiled`: CPU tensors are counted by
    :func:`fcnseg.evaluate.pair_counts.confusion_table` when numba is installed
    (``compiled=None``; ``True`` insists on it, ``False`` never); everything else (and any batch
    the compiled count cannot take: a value to name in an error, an ignore index that is a
    class) by :func:`_count_bincount`, the ``torch.bincount`` over ``K t + p`` that torchvision
    uses. Both are exact integer counts, so they agree. Raises ValueError on values that are
    not classes (or the ignore index, for targets).
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
    if _use_compiled(compiled, target):
        counts = _count_compiled(pred, target, k, ignore_index)
        if counts is not None:
            return counts
    return _count_bincount(pred, target, k, ignore_index)


def _use_compiled(compiled: bool | None, target: Tensor) -> bool:
    """Whether to count with the compiled counter: the one place that decides."""
    if compiled is None:
        return target.device.type == "cpu" and pair_counts.available()
    if compiled and target.device.type != "cpu":
        raise ValueError(f"compiled=True counts on the CPU; the labels are on {target.device}")
    if compiled and not pair_counts.available():
        raise ImportError('compiled=True needs numba (pip install "fcnseg[fast]")')
    return compiled


def _count_compiled(
    pred: Tensor, target: Tensor, k: int, ignore_index: int | None
) -> Tensor | None:
    """The compiled count of flat CPU tensors, or None when :func:`_count_bincount` must run:
    an ignore index that is a class, or a value outside the classes that is not ignored."""
    if ignore_index is not None and 0 <= ignore_index < k:
        return None  # its pixels would land in a class's row
    counted = pair_counts.confusion_table(
        target.contiguous().numpy(), pred.contiguous().numpy(), k, ignore_index
    )
    if counted is None:
        return None
    table, ignored = counted  # (k + 1, k): row k holds every target >= k
    if int(table[k].sum()) != ignored:  # a target past the classes that is not ignored
        return None
    return torch.from_numpy(table[:k])


def _check_predictions(pred: Tensor, k: int) -> None:
    low, high = (int(v) for v in torch.aminmax(pred))
    if low < 0 or high >= k:
        bad = pred[(pred < 0) | (pred >= k)].unique()[:8].tolist()
        raise ValueError(f"predicted values {bad} are not classes 0..{k - 1}")


def _count_bincount(pred: Tensor, target: Tensor, k: int, ignore_index: int | None) -> Tensor:
    """``bincount(K t + p)`` over the pixels not labelled ``ignore_index``, as torchvision's
    ``ConfusionMatrix`` does; the rest must be classes (the error names the values)."""
    _check_predictions(pred, k)
    if ignore_index is not None:
        keep = target != ignore_index
        target, pred = target[keep], pred[keep]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= k):
        bad = target[(target < 0) | (target >= k)].unique()[:8].tolist()
        raise ValueError(
            f"target values {bad} are not classes 0..{k - 1} nor ignore ({ignore_index})"
        )
    index = target.long() * k + pred.long()
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


def _cell(value: float) -> str:
    return "     -" if math.isnan(value) else f"{value:6.4f}"
