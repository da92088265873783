"""A run's metrics log (JSON lines) and its learning-curve figure.

Each line is one record: ``{"iteration", "epoch", "loss", "lr", "seconds"}`` for training
(``loss`` the mean over the iterations since the previous line) and ``{"iteration", "split":
"val", "pixel_acc", "mean_acc", "mean_iu", "fw_iu", "iu"}`` for a validation (a two-headed
net's: its semantic head's, plus the geometric head's as ``geometric_pixel_acc``, ...).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class MetricsLog:
    """Appends records to ``path``; ``truncate(n)`` drops records past iteration ``n`` (the
    lines a stopped run wrote after its last checkpoint, which the resumed run writes again)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                logger.warning("skipping a broken line of %s", self.path)
        return records

    def truncate(self, iteration: int) -> None:
        kept = [r for r in self.records() if r.get("iteration", 0) <= iteration]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def plot_curves(records: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Training loss and validation mean IU against iteration, written as a PNG (matplotlib's
    Agg backend; the file is replaced atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    train = [r for r in records if "loss" in r and math.isfinite(r["loss"])]
    val = [r for r in records if r.get("split") == "val"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        losses = [r["loss"] for r in train]
        left.plot([r["iteration"] for r in train], losses, lw=1)
        if min(losses) > 0 and max(losses) / min(losses) > 100:
            left.set_yscale("log")
    left.set(xlabel="iteration", ylabel="training loss", title="loss")
    if val:
        right.plot([r["iteration"] for r in val], [r["mean_iu"] for r in val], marker="o")
    geometric = [r for r in val if r.get("geometric_pixel_acc") is not None]
    if geometric:  # a two-headed net: its geometric head's pixel accuracy beside mean IU
        steps, values = (
            [r["iteration"] for r in geometric],
            [r["geometric_pixel_acc"] for r in geometric],
        )
        right.plot(steps, values, marker="s", label="geometric pixel acc")
        right.lines[0].set_label("semantic mean IU")
        right.legend()
    right.set(xlabel="iteration", ylabel="mean IU", title="validation mean IU")
    for axes in (left, right):
        axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, path)
    return path
