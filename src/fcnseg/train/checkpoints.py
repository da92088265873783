"""What a training run writes besides metrics, and how it is read back to resume.

- :func:`start_folder`: ``OUT/recipe.toml`` (the resolved recipe, a recipe file again) and
  ``OUT/run.json`` (one entry per start: time, iteration, :func:`git_revision`, versions,
  processes, initialisation, total iterations).
- :func:`checkpoint_meta` and :func:`training_state`: a ``last.pt``/``best.pt`` is the model
  record ``fcnseg.load`` reads (classes, palette, preprocessing, ...) plus a ``training`` entry
  (optimiser, loss scaler, iteration, RNG states of every process, best score, log window, class
  weights, recipe; with ``ema_decay`` also the optimised weights, the model being their
  average); :func:`write_checkpoint` stores it atomically.
- :func:`check_health`: before anything is written the weights must be finite and score the last
  batch sanely on every process, else :class:`TrainingDiverged` and the older checkpoint stays.
- :func:`resume_state`: loads ``OUT/last.pt`` into the net, optimiser and scaler and returns the
  counters (:class:`Resumed`) from which the loop continues exactly as if never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

import fcnseg
from fcnseg.checkpoint import CheckpointError, atomic_save, model_record, read
from fcnseg.data.common import SegmentationDataset
from fcnseg.data.transforms import Normalizer
from fcnseg.errors import EXIT_DIVERGED, FcnsegError, InputNotFoundError
from fcnseg.train import distributed
from fcnseg.train.averaging import average_state
from fcnseg.train.distributed import Processes
from fcnseg.train.log import MetricsLog
from fcnseg.train.recipe import RESUMABLE, Recipe, RecipeError, dumps, from_dict, resumed_changes
from fcnseg.train.run_folder import unhealthy

logger = logging.getLogger(__name__)


class TrainingDiverged(FcnsegError, RuntimeError):
    """The loss became NaN or infinite (the weights were not updated with it), or weights about
    to be checkpointed had blown up (they were not written); ``reason`` says which."""

    exit_status = EXIT_DIVERGED

    def __init__(
        self, iteration: int, loss: float, checkpoint: str, reason: str = "", resumable: bool = True
    ) -> None:
        what = reason or f"the loss is {loss} at iteration {iteration}; stopped before updating"
        advice = (
            "Lower the lr (or check the data) and resume: --resume --lr X."
            if resumable
            else "Lower the lr (or check the data) and start again."
        )
        super().__init__(f"training diverged: {what}. {checkpoint} {advice}")
        self.iteration = iteration
        self.loss = loss


def git_revision() -> dict[str, Any] | None:
    """The commit of the fcnseg sources and whether tracked files differ from it, if in git."""
    folder = Path(fcnseg.__file__).parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        return {
            "revision": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return None


def start_folder(
    out: Path,
    recipe: Recipe,
    resume: bool,
    log: MetricsLog,
    processes: Processes,
    iteration: int,
    total: int,
    init: str,
    changes: dict[str, list[Any]],
) -> None:
    """Write ``out/recipe.toml``, add this start to ``out/run.json`` (a fresh run's list starts
    empty; ``init``: how the net was initialised), cut ``log`` back to ``iteration`` (steps done)
    and log the settings a resume changed (``changes``: setting -> [old, new])."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.toml").write_text(dumps(recipe))
    run_path = out / "run.json"
    runs = json.loads(run_path.read_text()).get("starts", []) if resume else []
    runs.append(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "iteration": iteration,
            "git": git_revision(),
            "fcnseg": fcnseg.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(processes.device),
            "processes": processes.world_size,
            "init": init,
            "total_iterations": total,
        }
    )
    run_path.write_text(json.dumps({"starts": runs}, indent=2) + "\n")
    log.truncate(iteration)
    if changes:
        log.write({"iteration": iteration, "event": "resume", "changed": changes})


def checkpoint_meta(
    data: SegmentationDataset,
    normalizer: Normalizer,
    ignore_index: int,
    recipe: Recipe,
    heads: tuple[str, ...],
) -> dict[str, Any]:
    """The metadata ``predict`` needs beside the weights: the training split's classes and
    palette (and a two-headed net's geometric classes), preprocessing, ignore index, input scale
    and, when the recipe asks for one, the test-time augmentation to score with."""
    augmentation = recipe.test_time_augmentation()
    return {
        "classes": list(data.classes),
        "palette": [list(colour) for colour in data.palette],
        "preprocessing": normalizer.spec(),
        "ignore_index": ignore_index,
        "dataset": recipe.dataset,
        "input_scale": recipe.resize,
        **({"geometric_classes": list(data.geometric_classes)} if "geometric" in heads else {}),
        **({"test_time_augmentation": augmentation} if augmentation else {}),
    }


def training_state(
    recipe: Recipe,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    iteration: int,
    total: int,
    rng: list[Any],
    best: float | None,
    best_iteration: int,
    window: list[float],
    weights: Tensor | None,
    world_size: int,
    trained: nn.Module,
    average: AveragedModel | None = None,
) -> dict[str, Any]:
    """A checkpoint's ``training`` entry: all that :func:`resume_state` needs (``rng``: every
    process's random states, by rank; ``window``: loss sum and count since the last log line;
    with an ``average`` of the ``trained`` net, which is then the checkpoint's model, the
    trained weights and the averaging state)."""
    averaging: dict[str, Any] = {}
    if average is not None:
        averaging = {
            "trained_state_dict": {k: v.detach().cpu() for k, v in trained.state_dict().items()},
            "average": average_state(average),
        }
    return {
        "iteration": iteration,
        "total_iterations": total,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        # The schedule is a pure function of the iteration; this is for reading only.
        "scheduler": {
            "schedule": recipe.schedule,
            "last_lr": [group["lr"] for group in optimizer.param_groups],
        },
        "rng": rng,
        "best_mean_iu": best,
        "best_iteration": best_iteration,
        "log_window": list(window),
        "class_weights": None if weights is None else weights.cpu(),
        "recipe": dataclasses.asdict(recipe),
        "world_size": world_size,
        **averaging,
    }


def write_checkpoint(
    out: Path, names: list[str], net: nn.Module, meta: dict[str, Any], training: dict[str, Any]
) -> None:
    """Save ``net``'s record with ``meta`` and ``training`` atomically as each of ``names``."""
    record = model_record(net, **meta)
    record["training"] = training
    for name in names:
        atomic_save(record, out / name)
    logger.info("iteration %d: wrote %s", training["iteration"], ", ".join(names))


def kept(out: Path, saved_iteration: int | None) -> str:
    """What a diverged run leaves: the sentence naming the intact ``last.pt``, if any."""
    if saved_iteration is None:
        return "No checkpoint had been written yet."
    return f"The last checkpoint, {out / 'last.pt'} (iteration {saved_iteration}), is intact."


def check_health(
    net: nn.Module,
    last_batch: tuple[Tensor, Tensor] | None,
    ignore_index: int,
    processes: Processes,
    iteration: int,
    out: Path,
    saved_iteration: int | None,
) -> None:
    """TrainingDiverged, before anything is written, if the weights are not finite or score
    ``last_batch`` (images N x C x H x W, labels) with NaN or inf (every rank checks its own
    batch; all must call this)."""
    problem = None
    if last_batch is not None:
        images, labels = last_batch
        problem = unhealthy(net, images, labels, ignore_index)
    bad = torch.tensor([float(problem is not None)], device=processes.device)
    if distributed.all_reduce_sum(bad, processes).item() > 0:
        raise TrainingDiverged(
            iteration,
            math.nan,
            kept(out, saved_iteration),
            f"at iteration {iteration} {problem or 'another process diverged'}; "
            "these weights were not saved",
            resumable=saved_iteration is not None,
        )


@dataclass
class Resumed:
    """The counters a resumed run continues from (its net, optimiser and scaler are loaded)."""

    path: Path
    iteration: int  # optimiser steps done
    best: float | None
    best_iteration: int
    window: list[float]  # loss sum and count since the last log line
    weights: Tensor | None  # class weights
    rng: dict[str, Any] | None  # this process's random states; None if the process count changed
    # with ema_decay: the average's weights (the checkpoint's model) and averaging state
    average: tuple[dict[str, Tensor], dict[str, Any]] | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)  # setting: [old, new]


def resume_state(
    out: Path,
    recipe: Recipe,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    processes: Processes,
) -> Resumed:
    """Load ``out/last.pt`` into ``net``, ``optimizer`` and ``scaler``; RecipeError if
    ``recipe`` differs from the run's in a setting outside ``RESUMABLE``."""
    path = out / "last.pt"
    if not path.is_file():
        raise InputNotFoundError(f"nothing to resume: {path} does not exist")
    contents = read(path)
    training = contents.get("training")
    if not isinstance(training, dict):
        raise CheckpointError(f"{path} holds no training state; it cannot be resumed")
    stored = from_dict(training["recipe"], source=str(path))
    changed = [k for k in stored.differences(recipe) if k not in RESUMABLE]
    if changed:
        detail = ", ".join(
            f"{k}: {getattr(stored, k)!r} -> {getattr(recipe, k)!r}" for k in changed
        )
        raise RecipeError(f"--resume: the recipe differs from the run in {path}: {detail}")
    changes = resumed_changes(stored, recipe)
    # With ema_decay the model is the average and the optimised weights are kept apart.
    averaged = "trained_state_dict" in training
    net.load_state_dict(training["trained_state_dict"] if averaged else contents["state_dict"])
    optimizer.load_state_dict(training["optimizer"])
    scaler.load_state_dict(training["scaler"])
    states = training["rng"]
    rng = None
    if len(states) == processes.world_size:
        rng = states[processes.rank]
    else:
        logger.warning(
            "the run had %d processes, this one %d: data shards and random streams differ "
            "from an uninterrupted run",
            len(states),
            processes.world_size,
        )
    return Resumed(
        path,
        training["iteration"],
        training["best_mean_iu"],
        training["best_iteration"],
        list(training["log_window"]),
        training["class_weights"],
        rng,
        (contents["state_dict"], training["average"]) if averaged else None,
        changes,
    )
