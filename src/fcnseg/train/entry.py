"""The entry points of training: the recipe a run uses, a run from start to end, its result.

:func:`train` sets up the processes (one, or ``torchrun``'s), takes the run folder's lock
(:class:`fcnseg.train.run_folder.RunFolderLock`, rank 0) and runs a
:class:`fcnseg.train.trainer.Trainer`; the lock is released and the processes torn down however
the run ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcnseg.train import distributed
from fcnseg.train.build import InitReport
from fcnseg.train.recipe import Recipe, RecipeError
from fcnseg.train.recipe import load as load_recipe
from fcnseg.train.run_folder import RunFolderLock, remove_stale_temporaries

Progress = Callable[..., Any]  # tqdm-like: progress(total=, initial=) -> update/set_postfix/close
StepHook = Callable[[int, float], None]  # on_step(iterations done, loss)


@dataclass
class TrainResult:
    out: Path
    iteration: int  # optimiser steps done
    final_loss: float  # mean loss of the last logged window (nan if none ran)
    best_mean_iu: float | None  # the best value of the recipe's best_metric (mean IU by default)
    best_iteration: int
    metrics: dict[str, Any] | None  # the last validation's metrics
    seconds: float  # wall time of this call's training loop
    classes: list[str] = field(default_factory=list)
    init: InitReport = field(default_factory=InitReport)
    geometric_classes: list[str] = field(default_factory=list)  # a two-headed net's other head


def resolve_recipe(
    path: str | Path | None, overrides: dict[str, Any], resume: bool = False
) -> Recipe:
    """The recipe a run uses: the file at ``path`` (with ``resume`` and no ``path``, the run's
    own ``OUT/recipe.toml``; with neither, the defaults), then ``overrides`` (field name ->
    typed value or command-line text), validated."""
    if path is None and resume:
        if "out" not in overrides:
            raise RecipeError("--resume needs --out (the folder of the run to continue)")
        path = Path(overrides["out"]) / "recipe.toml"
    recipe = load_recipe(path) if path is not None else Recipe()
    return recipe.replace(source="command line", **overrides)


def train(
    recipe: Recipe,
    resume: bool = False,
    progress: Progress | None = None,
    on_step: StepHook | None = None,
) -> TrainResult:
    """Run ``recipe`` (continuing its ``out`` folder's ``last.pt`` with ``resume``)."""
    from fcnseg.train.trainer import Trainer  # the loop imports TrainResult from here

    recipe.check_runnable()
    processes = distributed.setup(recipe.device)
    # One run per folder, from its first moment (issue 12): rank 0 holds OUT/.lock.
    lock = RunFolderLock(recipe.out) if processes.is_main and recipe.out else None
    try:
        if lock is not None:
            lock.acquire()
            remove_stale_temporaries(recipe.out)
        return Trainer(recipe, processes, resume).run(progress, on_step)
    finally:
        if lock is not None:
            lock.release()
        distributed.teardown(processes)
