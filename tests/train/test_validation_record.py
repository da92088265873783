"""The metrics.jsonl line of a validation (fcnseg.train.validation.validation_record)."""

import math

from fcnseg.train.distributed import Processes, any_process
from fcnseg.train.validation import validation_record


def test_a_validation_line_writes_nan_as_null_and_prefixes_the_second_head():
    metrics = {"pixel_acc": 0.5, "mean_acc": math.nan, "mean_iu": 0.25, "fw_iu": 0.375}
    metrics["iu"] = [0.5, math.nan]
    geometric = {"geometric_pixel_acc": 1.0, "geometric_mean_acc": 1.0, "geometric_iu": [1.0]}
    geometric.update({"geometric_mean_iu": 1.0, "geometric_fw_iu": math.nan})
    assert validation_record(7, metrics) == {
        "iteration": 7, "split": "val", "pixel_acc": 0.5, "mean_acc": None, "mean_iu": 0.25,
        "fw_iu": 0.375, "iu": [0.5, None],
    }  # fmt: skip
    both = validation_record(7, {**metrics, **geometric, "extra": 3}, ("semantic", "geometric"))
    assert both["geometric_fw_iu"] is None and both["geometric_iu"] == [1.0]
    assert "extra" not in both and len(both) == 2 + 5 + 5


def test_any_process_in_a_single_process_is_the_flag():
    assert any_process(True, Processes()) is True and any_process(False, Processes()) is False
