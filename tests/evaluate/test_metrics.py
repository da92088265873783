"""The four metrics against hand-computed confusion matrices."""

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fcnseg.evaluate import pair_counts
from fcnseg.evaluate.metrics import ConfusionMatrix, confusion_counts

# Both counters where numba is installed: the compiled loop and torch.bincount.
COUNTERS = [False, True] if pair_counts.available() else [False]


def test_matrix_and_metrics_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    m = cm.compute()
    assert m["pixel_acc"] == pytest.approx(5 / 7)
    assert m["acc"] == pytest.approx([1 / 2, 1, 2 / 3])
    assert m["mean_acc"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    # IU_i = n_ii / (t_i + sum_j n_ji - n_ii)
    iu = [1 / (2 + 2 - 1), 2 / (2 + 3 - 2), 2 / (3 + 2 - 2)]
    assert m["iu"] == pytest.approx(iu)
    assert m["mean_iu"] == pytest.approx(sum(iu) / 3)
    assert m["fw_iu"] == pytest.approx((2 * iu[0] + 2 * iu[1] + 3 * iu[2]) / 7)


def test_accumulates_over_the_dataset_not_per_image_average():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 0]))  # image 1: perfect
    cm.update(torch.tensor([0]), torch.tensor([1]))  # image 2: all wrong
    m = cm.compute()
    assert m["pixel_acc"] == pytest.approx(4 / 5)
    assert m["iu"] == pytest.approx([4 / 5, 0.0])


def test_class_never_predicted_and_class_absent():
    cm = ConfusionMatrix(4)
    # class 1 labelled but never predicted; class 3 neither labelled nor predicted;
    # class 2 predicted but never labelled.
    cm.update(torch.tensor([0, 0, 2, 0]), torch.tensor([0, 1, 1, 0]))
    m = cm.compute()
    assert m["acc"][1] == 0.0 and math.isnan(m["acc"][2]) and math.isnan(m["acc"][3])
    assert m["mean_acc"] == pytest.approx((1 + 0) / 2)
    assert m["iu"][:3] == pytest.approx([2 / 3, 0.0, 0.0]) and math.isnan(m["iu"][3])
    assert m["mean_iu"] == pytest.approx((2 / 3) / 3)
    assert m["fw_iu"] == pytest.approx(0.5 * 2 / 3)


def test_all_pixels_ignored_gives_nan():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([255, 255]))
    m = cm.compute()
    assert cm.matrix.sum() == 0
    assert all(math.isnan(m[k]) for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"))


def test_single_class():
    cm = ConfusionMatrix(1)
    cm.update(torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long))
    m = cm.compute()
    assert m["pixel_acc"] == m["mean_acc"] == m["mean_iu"] == m["fw_iu"] == 1.0


def test_any_ignore_value_and_none():
    cm = ConfusionMatrix(2, ignore_index=-1)
    cm.update(torch.tensor([1, 0, 1]), torch.tensor([1, -1, 0]))
    assert cm.matrix.tolist() == [[0, 1], [0, 1]]
    cm = ConfusionMatrix(2, ignore_index=None)
    with pytest.raises(ValueError, match="255"):
        cm.update(torch.tensor([1]), torch.tensor([255]))


def test_matches_numpy_reference_on_random_maps():
    rng = np.random.default_rng(0)
    k = 6
    cm = ConfusionMatrix(k)
    hist = np.zeros((k, k))
    for _ in range(3):
        target = rng.integers(0, k + 1, (2, 30, 40))
        target[target == k] = 255
        pred = rng.integers(0, k, (2, 30, 40))
        cm.update(torch.from_numpy(pred), torch.from_numpy(target))
        valid = target != 255
        hist += np.bincount(k * target[valid] + pred[valid], minlength=k * k).reshape(k, k)
    np.testing.assert_array_equal(cm.matrix.numpy(), hist)
    with np.errstate(divide="ignore", invalid="ignore"):
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    assert cm.compute()["mean_iu"] == pytest.approx(np.nanmean(iu))


def test_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        cm.update(torch.zeros(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target values \[7\]"):
        cm.update(torch.zeros(2, dtype=torch.long), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match=r"predicted values \[3\]"):
        cm.update(torch.tensor([3, 0]), torch.tensor([0, 1]))


def _reference_counts(pred: np.ndarray, target: np.ndarray, k: int, ignore) -> np.ndarray:
    keep = target != ignore if ignore is not None else np.ones(target.shape, bool)
    pairs = k * target[keep].astype(np.int64) + pred[keep]
    return np.bincount(pairs, minlength=k * k).reshape(k, k)


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 40),
    ignore=st.sampled_from([255, -1, 0, 100, -(10**9), None]),
    dtype=st.sampled_from([torch.uint8, torch.int16, torch.int32, torch.int64]),
    seed=st.integers(0, 2**16),
    compiled=st.sampled_from(COUNTERS),
)
def test_counts_equal_numpy_for_any_ignore_value_and_dtype(k, ignore, dtype, seed, compiled):
    if ignore is not None and 0 <= ignore < k:
        ignore = None if ignore == 0 else ignore + k  # an ignore index must not be a class
    lowest, highest = (torch.iinfo(dtype).min, torch.iinfo(dtype).max)
    if ignore is not None and not lowest <= ignore <= highest:
        ignore = highest
    rng = np.random.default_rng(seed)
    target = rng.integers(0, k, (3, 17, 19))
    if ignore is not None:
        target[rng.random(target.shape) < 0.2] = ignore
    pred = rng.integers(0, k, target.shape)
    counts = confusion_counts(
        torch.from_numpy(pred).to(dtype), torch.from_numpy(target).to(dtype), k, ignore, compiled
    )
    assert counts.dtype == torch.int64 and counts.shape == (k, k)
    np.testing.assert_array_equal(counts.numpy(), _reference_counts(pred, target, k, ignore))


@pytest.mark.parametrize("compiled", COUNTERS)
@pytest.mark.parametrize("ignore", [255, -1, -(10**9)])
def test_invalid_target_values_are_named_whatever_the_ignore_index(ignore, compiled):
    target = torch.tensor([0, 1, ignore, 9, 3, -5, 9])
    with pytest.raises(ValueError, match=r"target values \[-5, 3, 9\] are not classes 0..2"):
        confusion_counts(torch.zeros(7, dtype=torch.long), target, 3, ignore, compiled)
    with pytest.raises(ValueError, match=r"target values \[9\] are not classes 0..2"):
        confusion_counts(torch.zeros(3, dtype=torch.long), torch.tensor([0, 9, 2]), 3, ignore)
    with pytest.raises(ValueError, match=r"target values \[255\]"):
        pred, target = torch.zeros(2, dtype=torch.uint8), torch.tensor([255, 1], dtype=torch.uint8)
        confusion_counts(pred, target, 3, None, compiled)


@pytest.mark.parametrize("compiled", COUNTERS)
def test_invalid_predictions_are_named(compiled):
    for pred in (torch.tensor([0, 3, 1, 7]), torch.tensor([0, -2, 1, 2])):
        bad = sorted({v for v in pred.tolist() if not 0 <= v < 3})
        with pytest.raises(ValueError, match=re.escape(f"predicted values {bad} are not classes")):
            confusion_counts(pred, torch.tensor([0, 1, 255, 2]), 3, 255, compiled)
    with pytest.raises(ValueError, match=r"predicted values \[200\]"):
        pred = torch.tensor([0, 200], dtype=torch.uint8)
        confusion_counts(pred, torch.tensor([1, 1], dtype=torch.uint8), 3, 255, compiled)


@pytest.mark.parametrize("compiled", COUNTERS)
def test_an_ignore_index_that_is_a_class_sets_that_class_aside(compiled):
    target, pred = torch.tensor([0, 1, 2, 2, 1]), torch.tensor([0, 2, 2, 1, 1])
    counts = confusion_counts(pred, target, 3, ignore_index=1, compiled=compiled)
    assert counts.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]


def test_empty_batch_counts_nothing():
    empty = torch.zeros(0, 5, dtype=torch.long)
    assert confusion_counts(empty, empty, 4).equal(torch.zeros(4, 4, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.int16, torch.int64, torch.uint8])
def test_counting_leaves_its_inputs_alone(dtype):
    pred, target = torch.tensor([[0, 1], [2, 1]], dtype=dtype), torch.tensor([[1, 1], [0, 2]])
    saved = pred.clone(), target.clone()
    confusion_counts(pred, target.to(dtype), 3)
    assert torch.equal(pred, saved[0]) and torch.equal(target, saved[1])
