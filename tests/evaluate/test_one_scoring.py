"""One scoring path: the validation mean IU that picked best.pt is what `fcnseg eval` gives it."""

from __future__ import annotations

import json

import pytest

from fcnseg.cli import main
from fcnseg.train import train
from helpers import tiny_recipe, write_tiny_dataset


@pytest.mark.parametrize(
    ("resize", "amp", "precision"),
    [(1.0, "fp32", "fp32"), (0.75, "bf16", "bf16")],  # input scale and autocast both carried
)
def test_best_validation_equals_fcnseg_eval_of_best_pt(tmp_path, capsys, resize, amp, precision):
    data = write_tiny_dataset(tmp_path / "data", train=6, val=3)
    out = tmp_path / "run"
    recipe = tiny_recipe(data, out, iterations=6, val_every=2, log_every=2, resize=resize, amp=amp)
    result = train(recipe)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = {r["iteration"]: r for r in records if r.get("split") == "val"}
    assert sorted(val) == [2, 4, 6]
    best = val[result.best_iteration]
    assert best["mean_iu"] == result.best_mean_iu == max(r["mean_iu"] for r in val.values())

    report = tmp_path / "eval.json"
    args = ["--threads", "1", "eval", "--checkpoint", str(out / "best.pt"), "--dataset"]
    args += ["folder", "--root", str(data), "--split", "val", "--device", "cpu"]
    args += ["--precision", precision, "--json", str(report)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    scored = json.loads(report.read_text())
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert scored[key] == best[key], key  # exactly: the same function on the same weights
    assert f"mean IU {best['mean_iu']:.4f}" in printed
