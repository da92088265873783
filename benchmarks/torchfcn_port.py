"""torchfcn's code that the benchmarks and tests compare against: its weight names and metrics.

- :func:`from_torchfcn` / :func:`to_torchfcn`: torchfcn FCN32s/16s/8s state dicts <-> ours
  (used by ``head_to_head.py`` and ``peers/run_peers.py`` to run both nets on one set of
  weights);
- :func:`fast_hist` / :func:`label_accuracy_score`: a faithful copy of ``torchfcn.utils``'s
  metrics, the baseline of ``bench_metrics.py`` and a cross-check in the tests.

Not part of the library: fcnseg's own metrics are :mod:`fcnseg.evaluate.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import Tensor

_VGG_PREFIXES = ("conv", "fc6", "fc7")


def from_torchfcn(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchfcn FCN32s/16s/8s state dict -> ours: VGG layers move under ``backbone.``.

    The score and upscore layers already share the Caffe names. Both nets pad conv1_1 by 100,
    so our ``geometry="reference"`` nets give the same scores on the mapped weights.
    """
    return {
        (f"backbone.{key}" if key.startswith(_VGG_PREFIXES) else key): value
        for key, value in state.items()
    }


def to_torchfcn(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Ours -> torchfcn (the inverse of :func:`from_torchfcn`); at-once scale buffers dropped."""
    return {
        key.removeprefix("backbone."): value
        for key, value in state.items()
        if not key.startswith("scale_")
    }


def fast_hist(label_true: np.ndarray, label_pred: np.ndarray, n_class: int) -> np.ndarray:
    """torchfcn.utils._fast_hist, verbatim in substance."""
    mask = (label_true >= 0) & (label_true < n_class)
    return np.bincount(
        n_class * label_true[mask].astype(int) + label_pred[mask], minlength=n_class**2
    ).reshape(n_class, n_class)


def label_accuracy_score(label_trues, label_preds, n_class: int) -> tuple[float, ...]:
    """torchfcn.utils.label_accuracy_score: accumulate float histograms, then the four scores."""
    hist = np.zeros((n_class, n_class))
    for lt, lp in zip(label_trues, label_preds):
        hist += fast_hist(lt.flatten(), lp.flatten(), n_class)
    acc = np.diag(hist).sum() / hist.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        acc_cls = np.nanmean(np.diag(hist) / hist.sum(axis=1))
        iu = np.diag(hist) / (hist.sum(axis=1) + hist.sum(axis=0) - np.diag(hist))
    mean_iu = np.nanmean(iu)
    freq = hist.sum(axis=1) / hist.sum()
    fwavacc = (freq[freq > 0] * iu[freq > 0]).sum()
    return acc, acc_cls, mean_iu, fwavacc
