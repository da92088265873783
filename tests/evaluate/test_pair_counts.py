"""The compiled confusion counter (numba) against numpy's bincount."""

import numpy as np
import pytest
import torch

from fcnseg.evaluate import metrics, pair_counts
from fcnseg.evaluate.metrics import confusion_counts

pytest.importorskip("numba", reason="the compiled counter needs numba (fcnseg[fast])")


def _bincount_table(target: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    rows = np.minimum(target.astype(np.int64), k)
    return np.bincount(rows * k + pred, minlength=(k + 1) * k).reshape(k + 1, k)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64])
@pytest.mark.parametrize("n", [1, 3, 4, 4097, 3 * pair_counts.BLOCK + 5])
def test_table_equals_bincount_across_block_and_table_boundaries(dtype, n):
    rng = np.random.default_rng(n)
    k = 5
    target = rng.integers(0, k + 3, n).astype(dtype)  # k .. k + 2: past the classes
    target[rng.random(n) < 0.1] = 120  # the ignore index
    pred = rng.integers(0, k, n).astype(dtype)
    table, ignored = pair_counts.confusion_table(target, pred, k, 120)
    assert table.dtype == np.int64 and table.shape == (k + 1, k)
    np.testing.assert_array_equal(table, _bincount_table(target, pred, k))
    assert ignored == int((target == 120).sum())


def test_runs_of_one_pair_are_counted_whole():
    target = np.full(10_000, 2, np.uint8)
    pred = np.full(10_000, 1, np.uint8)
    table, ignored = pair_counts.confusion_table(target, pred, 3, 255)
    assert table[2, 1] == 10_000 and table.sum() == 10_000 and ignored == 0


def test_many_classes_use_32_bit_codes():
    rng = np.random.default_rng(0)
    k = 300  # (k + 1) k > 2**16 bins
    target, pred = rng.integers(0, k, 5000), rng.integers(0, k, 5000)
    table, _ = pair_counts.confusion_table(target, pred, k, None)
    np.testing.assert_array_equal(table, _bincount_table(target, pred, k))


@pytest.mark.parametrize(
    "target, pred",
    [([0, 1, 2], [0, 3, 1]), ([0, 1, 2], [0, -1, 1]), ([0, -1, 2], [0, 1, 1])],
)
def test_values_out_of_range_return_none(target, pred):
    assert pair_counts.confusion_table(np.array(target), np.array(pred), 3, 255) is None


def test_an_ignore_index_the_dtype_cannot_hold_counts_nothing():
    target = np.array([0, 255, 1], np.uint8)
    table, ignored = pair_counts.confusion_table(target, np.zeros(3, np.uint8), 2, -1)
    assert ignored == 0 and table[2].sum() == 1  # 255: past the classes, not ignored


def test_confusion_counts_agree_on_label_maps_of_every_kind():
    from speed_rows import LABEL_MAPS, label_maps  # benchmarks/ (pytest's pythonpath)

    for kind in LABEL_MAPS:
        pred, target = label_maps((120, 130), num_classes=21, kind=kind)
        for p, t in ((pred, target), (pred.long(), target.long()), (pred.long(), target)):
            fast = confusion_counts(p, t, 21, compiled=True)
            assert torch.equal(fast, confusion_counts(p, t, 21, compiled=False))
            assert int(fast.sum()) == int((t != 255).sum())


def test_strided_inputs_are_counted_as_they_read():
    pred = torch.arange(24).reshape(4, 6) % 3
    target = (torch.arange(24).reshape(6, 4) % 3).t()  # not contiguous
    expected = confusion_counts(pred, target.contiguous(), 3, compiled=False)
    assert torch.equal(confusion_counts(pred, target, 3, compiled=True), expected)


def test_compiled_true_says_what_it_needs(monkeypatch):
    monkeypatch.setattr(metrics.pair_counts, "available", lambda: False)
    with pytest.raises(ImportError, match=r"fcnseg\[fast\]"):
        confusion_counts(
            torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), 2, compiled=True
        )
    # left to choose, it counts with torch.bincount
    counts = confusion_counts(torch.tensor([1, 0]), torch.tensor([1, 1]), 2)
    assert counts.tolist() == [[0, 0], [1, 1]]
