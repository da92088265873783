"""A confusion matrix counted by one compiled function, when numba is installed.

``torch.bincount`` on the CPU is one serial loop over an index built in separate passes, and
it increments a single table, so runs of equal pairs (every real label map) wait on the same
counter. Here one call checks the value ranges, then for each block of pixels makes the pair
codes ``min(t, K) K + p`` in a loop the compiler vectorises (into a buffer that stays in L1)
and counts them into four tables in turn (neighbouring pixels never touch the same counter).
Every target value past the classes shares row K, and the ignored pixels are counted on the
side, so the tables stay (K + 1) x K whatever the ignore index. Exact: integer counts.

One thread: on one label map waking others costs more than it saves (measured at 500x500 on
two cores: numba's OpenMP and workqueue pools both made it slower).

numba is optional (``pip install "fcnseg[fast]"``); :func:`available` says whether it is
there. The function is compiled once per dtype pair (uint8 and int64 are taken as they come,
other integer dtypes are widened to int64) and cached on disk.
"""

from __future__ import annotations

from functools import cache

import numpy as np

BLOCK = 4096  # pixels whose codes are made, then counted, in one go (8-16 KiB of codes)
TABLES = 4  # interleaved count tables: consecutive pixels land in different ones


@cache
def available() -> bool:
    """Whether numba imports (the compiled counter can be used)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def confusion_table(
    target: np.ndarray, pred: np.ndarray, k: int, ignore_index: int | None
) -> tuple[np.ndarray, int] | None:
    """``(table, ignored)`` for 1-D integer arrays of one length, or None if a value is out
    of this path's range: a prediction outside 0..k-1 or a negative target.

    ``table`` (k + 1, k) int64: row t < k counts the pixels of target t by prediction, row k
    those of every target >= k (the ignored ones among them); ``ignored``: how many pixels
    hold ``ignore_index`` (0 if it is None or negative).
    """
    if target.shape != pred.shape or target.ndim != 1 or not target.size:
        raise ValueError(f"need two 1-D arrays of one length, got {target.shape}, {pred.shape}")
    bins = (k + 1) * k
    if bins > 1 << 32:
        raise ValueError(f"{k} classes are too many for 32-bit pair codes")
    code_type = np.uint16 if bins <= 1 << 16 else np.uint32
    target, pred = _kernel_dtype(target), _kernel_dtype(pred)
    # Scalars typed like the arrays they meet, so the compiled loops stay in narrow lanes.
    target_type = target.dtype.type
    limits = np.iinfo(target_type)
    k_target = target_type(min(k, limits.max))  # min(t, k): a clamp only where t can pass k
    counts_ignore = ignore_index is not None and limits.min <= ignore_index <= limits.max
    ignore = target_type(ignore_index if counts_ignore else 0)
    counts, ignored, in_range = _kernel()(
        target, pred, k_target, code_type(k), ignore, np.empty(BLOCK, code_type)
    )
    if not in_range:
        return None
    return counts.reshape(k + 1, k), int(ignored) if counts_ignore else 0


def _kernel_dtype(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.uint8 or values.dtype == np.int64:
        return values
    return values.astype(np.int64)


@cache
def _kernel():
    from numba import njit

    @njit(nogil=True, cache=True)
    def confusion_table_compiled(target, pred, k_target, k_code, ignore, codes):
        n = target.size
        k = np.int64(k_code)
        bins = (k + 1) * k
        tables = np.zeros((TABLES, bins), np.int32)  # int32: a call counts < 2**31 pixels
        ignored = 0
        for start in range(0, n, BLOCK):  # one pass over memory: each block is checked,
            size = min(BLOCK, n - start)  # coded and counted while it is in cache
            target_block, pred_block = target[start : start + size], pred[start : start + size]
            target_low, pred_low, pred_high = target_block[0], pred_block[0], pred_block[0]
            if target.itemsize == 1 and pred.itemsize == 1:  # bytes: a loop per job (faster)
                for i in range(size):  # vectorised: min, and a count of the ignored pixels
                    target_low = min(target_low, target_block[i])
                    ignored += target_block[i] == ignore
                for i in range(size):  # vectorised min and max
                    pred_low = min(pred_low, pred_block[i])
                    pred_high = max(pred_high, pred_block[i])
                for i in range(size):  # vectorised: clamp, multiply, add, narrow
                    codes[i] = min(target_block[i], k_target) * k_code + pred_block[i]
            else:  # wider values: one loop, so each is read from memory once
                for i in range(size):  # vectorised
                    t, p = target_block[i], pred_block[i]
                    target_low = min(target_low, t)
                    ignored += t == ignore
                    pred_low, pred_high = min(pred_low, p), max(pred_high, p)
                    codes[i] = min(t, k_target) * k_code + p  # made before the check, unused
            if target_low < 0 or pred_low < 0 or pred_high >= k:  # until it passes
                return np.zeros(bins, np.int64), 0, False
            i = 0
            while i + 4 <= size:
                tables[0, codes[i]] += 1
                tables[1, codes[i + 1]] += 1
                tables[2, codes[i + 2]] += 1
                tables[3, codes[i + 3]] += 1
                i += 4
            while i < size:
                tables[0, codes[i]] += 1
                i += 1
        counts = np.empty(bins, np.int64)
        for j in range(bins):
            counts[j] = tables[0, j] + tables[1, j] + tables[2, j] + tables[3, j]
        return counts, ignored, True

    return confusion_table_compiled
