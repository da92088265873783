"""The training loop: a recipe in, checkpoints, a metrics log and a learning curve out.

Section 4.3 of the paper trains whole images (batch 1) with SGD, momentum 0.99 and the
unnormalised per-pixel loss; the recipes in ``recipes/`` hold those numbers. A run writes to
``recipe.out``:

- ``recipe.toml``: the resolved recipe (a recipe file again) and ``run.json`` (git revision,
  versions, processes, initialisation);
- ``last.pt`` and ``best.pt`` (best validation mean IU): model records that ``fcnseg.load``
  reads, plus a ``training`` entry (optimiser, loss scaler, iteration, RNG states, best score,
  class weights, recipe) from which ``resume=True`` continues exactly as if never stopped;
- ``metrics.jsonl`` (:mod:`fcnseg.train.log`) and ``curves.png``.

Under ``torchrun`` each process trains on its shard with ``DistributedDataParallel``; the
validation confusion matrix is summed over processes, and only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

import fcnseg
from fcnseg.checkpoint import CheckpointError, atomic_save, model_record, read
from fcnseg.data.common import DatasetError, SegmentationDataset
from fcnseg.data.transforms import Normalizer, collate_pad
from fcnseg.errors import EXIT_DIVERGED, FcnsegError, InputNotFoundError, RunFolderError
from fcnseg.evaluate.scoring import score
from fcnseg.runtime import canonical_precision, precision_dtype
from fcnseg.train import distributed
from fcnseg.train.build import (
    InitReport,
    TrainTransform,
    class_weights,
    initialize,
    lr_factor,
    make_model,
    make_normalizer,
    make_optimizer,
    open_splits,
)
from fcnseg.train.distributed import Processes
from fcnseg.train.log import MetricsLog, plot_curves
from fcnseg.train.losses import segmentation_loss
from fcnseg.train.recipe import RESUMABLE, Recipe, RecipeError, dumps, from_dict, resumed_changes
from fcnseg.train.recipe import load as load_recipe
from fcnseg.train.run_folder import (
    DeferredInterrupt,
    RunFolderLock,
    TrainingInterrupted,
    ignore_sigint_in_worker,
    remove_stale_temporaries,
    unhealthy,
)
from fcnseg.train.sampler import KeyedSamples, ResumableBatchSampler, loss_sample_generator
from fcnseg.train.state import capture_rng, restore_rng, seed_everything

logger = logging.getLogger(__name__)

Progress = Callable[..., Any]  # tqdm-like: progress(total=, initial=) -> update/set_postfix/close
StepHook = Callable[[int, float], None]  # on_step(iterations done, loss)
METRICS = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")


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


@dataclass
class TrainResult:
    out: Path
    iteration: int  # optimiser steps done
    final_loss: float  # mean loss of the last logged window (nan if none ran)
    best_mean_iu: float | None
    best_iteration: int
    metrics: dict[str, Any] | None  # the last validation's metrics
    seconds: float  # wall time of this call's training loop
    classes: list[str] = field(default_factory=list)
    init: InitReport = field(default_factory=InitReport)


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


def validate(
    model: nn.Module,
    dataset: SegmentationDataset,
    preprocess: Normalizer,
    scale: float = 1.0,
    dtype: torch.dtype | None = None,
    processes: Processes | None = None,
    limit: int = 0,
    num_workers: int = 0,
) -> dict[str, Any]:
    """The four metrics of ``model`` on (the first ``limit`` of) ``dataset``'s raw images, by
    :func:`fcnseg.evaluate.scoring.score` (what ``fcnseg eval`` runs on a checkpoint): each
    process scores every ``world_size``-th image and the confusion matrices are summed."""
    processes = processes or Processes()
    count = min(len(dataset), limit) if limit else len(dataset)
    shard = range(processes.rank, count, processes.world_size)
    matrix = score(model, dataset, preprocess, scale, dtype, shard, num_workers)
    distributed.all_reduce_sum(matrix.matrix, processes)
    return matrix.compute()


def image_sizes(dataset: SegmentationDataset) -> list[tuple[int, int]]:
    """``(H, W)`` of every sample: the reader's ``size_of(i)`` where it has one (generated
    data knows sizes without drawing), else each label's shape (reads the whole split once)."""
    size_of = getattr(dataset, "size_of", None)
    if size_of is not None:
        return [tuple(size_of(index)) for index in range(len(dataset))]
    logger.info("reading %d labels for their sizes (batch_by_size)", len(dataset))
    return [tuple(dataset[index][1].shape[-2:]) for index in range(len(dataset))]


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a recipe's ``amp`` (:mod:`fcnseg.runtime` precision names):
    bf16 on CPU or CUDA, fp16 on CUDA only (elsewhere a warning, and float32)."""
    if canonical_precision(amp) == "fp16" and device.type != "cuda":
        logger.warning("amp 'fp16' needs CUDA; training in float32 on %s", device)
        return None
    return precision_dtype(amp, device)


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


def _plain(value: Any) -> Any:
    """Metrics for JSON: nan becomes None."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


class Trainer:
    """One run: builds everything from the recipe (or the checkpoint, when resuming)."""

    def __init__(self, recipe: Recipe, processes: Processes, resume: bool = False) -> None:
        self.recipe = recipe
        self.processes = processes
        self.device = processes.device
        self.out = Path(recipe.out)
        self.log = MetricsLog(self.out / "metrics.jsonl")
        if not resume and (self.out / "last.pt").exists():
            raise RunFolderError(
                f"{self.out} already holds a run (last.pt): resume it with --resume, or choose "
                "another --out"
            )
        seed_everything(recipe.seed)

        self.train_set, self.val_set = open_splits(recipe)
        image, label = self.train_set[0]
        if label.ndim != 2:
            raise DatasetError(
                f"{recipe.dataset} gives {label.shape[0]} label maps per image; train one "
                "target (e.g. siftflow's option target = 'semantic')"
            )
        self.normalizer = make_normalizer(recipe.preprocessing, image.shape[0])
        self.ignore_index = self.train_set.ignore_index
        self.net = make_model(recipe, self.train_set.num_classes, image.shape[0])
        self.init = (
            InitReport("resume")
            if resume
            else initialize(self.net, recipe.init, recipe.preprocessing)
        )
        logger.info(self.init.summary())
        self.net.to(self.device)
        if recipe.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(recipe, self.net)
        self.amp_dtype = amp_dtype_for(recipe.amp, self.device)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype is torch.float16
        )
        self.sampler = ResumableBatchSampler(
            len(self.train_set),
            recipe.batch_size,
            recipe.seed,
            processes.rank,
            processes.world_size,
            sizes=image_sizes(self.train_set) if recipe.batch_by_size else None,
        )
        self.total = recipe.iterations or recipe.epochs * self.sampler.batches_per_epoch

        self.iteration = 0  # optimiser steps done
        self.best: float | None = None
        self.best_iteration = 0
        self.saved_iteration: int | None = None  # of the newest last.pt
        self.window = [0.0, 0]  # loss sum and count since the last log line
        self.rng: dict[str, Any] | None = None  # to restore right before the loop
        self.changes: dict[str, list[Any]] = {}  # recipe settings a resume changed: [old, new]
        self.last_batch: tuple[Tensor, Tensor] | None = None  # checked before checkpoints
        self.weights: Tensor | None = None
        if resume:
            self._resume()
        if self.weights is None and recipe.class_weights == "median_frequency":
            self.weights = class_weights(self.train_set, recipe.num_workers)
            logger.info("median-frequency class weights: %s", self.weights.tolist())
        if self.weights is not None:
            self.weights = self.weights.to(self.device)
        if processes.is_main:
            self._start_folder(resume)

    # ----------------------------------------------------------------------- resume and files

    def _resume(self) -> None:
        path = self.out / "last.pt"
        if not path.is_file():
            raise InputNotFoundError(f"nothing to resume: {path} does not exist")
        contents = read(path)
        training = contents.get("training")
        if not isinstance(training, dict):
            raise CheckpointError(f"{path} holds no training state; it cannot be resumed")
        stored = from_dict(training["recipe"], source=str(path))
        changed = [k for k in stored.differences(self.recipe) if k not in RESUMABLE]
        if changed:
            detail = ", ".join(
                f"{k}: {getattr(stored, k)!r} -> {getattr(self.recipe, k)!r}" for k in changed
            )
            raise RecipeError(f"--resume: the recipe differs from the run in {path}: {detail}")
        self.changes = resumed_changes(stored, self.recipe)  # logged by _start_folder
        self.net.load_state_dict(contents["state_dict"])
        self.optimizer.load_state_dict(training["optimizer"])
        self.scaler.load_state_dict(training["scaler"])
        self.iteration = self.saved_iteration = training["iteration"]
        self.best, self.best_iteration = training["best_mean_iu"], training["best_iteration"]
        self.window = list(training["log_window"])
        self.weights = training["class_weights"]
        states = training["rng"]
        if len(states) == self.processes.world_size:
            self.rng = states[self.processes.rank]
        else:
            logger.warning(
                "the run had %d processes, this one %d: data shards and random streams differ "
                "from an uninterrupted run",
                len(states),
                self.processes.world_size,
            )
        self.init.source = f"{path} at iteration {self.iteration}"
        logger.info("resuming %s at iteration %d", path, self.iteration)

    def _start_folder(self, resume: bool) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "recipe.toml").write_text(dumps(self.recipe))
        run_path = self.out / "run.json"
        runs = json.loads(run_path.read_text()).get("starts", []) if resume else []
        runs.append(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "iteration": self.iteration,
                "git": git_revision(),
                "fcnseg": fcnseg.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "device": str(self.device),
                "processes": self.processes.world_size,
                "init": self.init.summary(),
                "total_iterations": self.total,
            }
        )
        run_path.write_text(json.dumps({"starts": runs}, indent=2) + "\n")
        self.log.truncate(self.iteration)
        if self.changes:
            self.log.write(
                {"iteration": self.iteration, "event": "resume", "changed": self.changes}
            )

    def _meta(self) -> dict[str, Any]:
        data = self.train_set
        return {
            "classes": list(data.classes),
            "palette": [list(colour) for colour in data.palette],
            "preprocessing": self.normalizer.spec(),
            "ignore_index": self.ignore_index,
            "dataset": self.recipe.dataset,
            "input_scale": self.recipe.resize,
        }

    def _checkpoint(self, names: list[str]) -> None:
        """Write ``names`` (``last.pt``, ``best.pt``) from rank 0; every rank must call this."""
        self._check_health()
        states = distributed.gather(capture_rng(), self.processes)
        if not self.processes.is_main:
            return
        record = model_record(self.net, **self._meta())
        record["training"] = {
            "iteration": self.iteration,
            "total_iterations": self.total,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            # The schedule is a pure function of the iteration; this is for reading only.
            "scheduler": {
                "schedule": self.recipe.schedule,
                "last_lr": [group["lr"] for group in self.optimizer.param_groups],
            },
            "rng": states,
            "best_mean_iu": self.best,
            "best_iteration": self.best_iteration,
            "log_window": list(self.window),
            "class_weights": None if self.weights is None else self.weights.cpu(),
            "recipe": dataclasses.asdict(self.recipe),
            "world_size": self.processes.world_size,
        }
        for name in names:
            atomic_save(record, self.out / name)
        if "last.pt" in names:
            self.saved_iteration = self.iteration
        logger.info("iteration %d: wrote %s", self.iteration, ", ".join(names))

    def _check_health(self) -> None:
        """TrainingDiverged, before anything is written, if the weights are not finite or
        score the last batch with NaN or inf (every rank checks its own batch)."""
        problem = None
        if self.last_batch is not None:
            images, labels = self.last_batch
            problem = unhealthy(self.net, images, labels, self.ignore_index)
        bad = torch.tensor([float(problem is not None)], device=self.device)
        if distributed.all_reduce_sum(bad, self.processes).item() > 0:
            raise TrainingDiverged(
                self.iteration,
                math.nan,
                self._kept(),
                f"at iteration {self.iteration} {problem or 'another process diverged'}; "
                "these weights were not saved",
                resumable=self.saved_iteration is not None,
            )

    def _kept(self) -> str:
        if self.saved_iteration is None:
            return "No checkpoint had been written yet."
        return (
            f"The last checkpoint, {self.out / 'last.pt'} (iteration {self.saved_iteration}), "
            "is intact."
        )

    def _stop_requested(self, interrupt: DeferredInterrupt) -> bool:
        """Whether Ctrl-C was pressed (in any process: they must stop at the same step)."""
        if not self.processes.distributed:
            return interrupt.requested
        flag = torch.tensor([float(interrupt.requested)], device=self.device)
        return distributed.all_reduce_sum(flag, self.processes).item() > 0

    # ----------------------------------------------------------------------- the loop

    def _loader(self) -> DataLoader:
        self.sampler.start, self.sampler.stop = self.iteration, self.total
        samples = KeyedSamples(
            self.train_set, TrainTransform(self.recipe, self.normalizer, self.ignore_index)
        )
        return DataLoader(
            samples,
            batch_sampler=self.sampler,
            collate_fn=partial(collate_pad, ignore_index=self.ignore_index, image_pad=0.0),
            num_workers=self.recipe.num_workers,
            worker_init_fn=ignore_sigint_in_worker if self.recipe.num_workers else None,
            pin_memory=self.device.type == "cuda",
            # Its own generator: making the iterator draws nothing from the global RNG.
            generator=torch.Generator().manual_seed(self.recipe.seed),
        )

    def _step(self, model: nn.Module, images: Tensor, labels: Tensor) -> float:
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.recipe.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        factor = lr_factor(self.recipe, self.iteration, self.total)
        for group in self.optimizer.param_groups:
            group["lr"] = self.recipe.lr * group["lr_mult"] * factor
        with torch.autocast(self.device.type, self.amp_dtype, enabled=self.amp_dtype is not None):
            scores = model(images)  # (N, K, H, W)
        loss = self._loss(scores.float(), labels)
        mean = distributed.all_reduce_sum(loss.detach().clone(), self.processes)
        value = mean.item() / self.processes.world_size
        if not math.isfinite(value):
            raise TrainingDiverged(
                self.iteration + 1, value, self._kept(), resumable=self.saved_iteration is not None
            )
        self.last_batch = (images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value

    def _loss(self, scores: Tensor, labels: Tensor) -> Tensor:
        """The recipe's loss: normalisation, class weights and, below a ``loss_sample_rate`` of
        1, a Bernoulli mask drawn from ``(seed, iteration, rank)`` (section 3.4)."""
        recipe = self.recipe
        sampling = recipe.loss_sample_rate < 1
        generator = (
            loss_sample_generator(recipe.seed, self.iteration, self.processes.rank)
            if sampling
            else None
        )
        return segmentation_loss(
            scores,
            labels,
            self.ignore_index,
            self.weights,
            recipe.loss,
            sample_rate=recipe.loss_sample_rate if sampling else None,
            rescale=recipe.loss_sample_rescale,
            generator=generator,
        )

    def _validate(self) -> dict[str, Any]:
        assert self.val_set is not None
        metrics = validate(
            self.net,
            self.val_set,
            self.normalizer,
            scale=self.recipe.resize,
            dtype=self.amp_dtype,
            processes=self.processes,
            limit=self.recipe.val_images,
            num_workers=self.recipe.num_workers,
        )
        improved = math.isfinite(metrics["mean_iu"]) and (
            self.best is None or metrics["mean_iu"] > self.best
        )
        if improved:
            self.best, self.best_iteration = metrics["mean_iu"], self.iteration
        if self.processes.is_main:
            record = {"iteration": self.iteration, "split": "val"}
            record.update({k: _plain(metrics[k]) for k in (*METRICS, "iu")})
            self.log.write(record)
            logger.info(
                "iteration %d: val mean IU %.4f (best %.4f at %d)",
                self.iteration,
                metrics["mean_iu"],
                self.best if self.best is not None else math.nan,
                self.best_iteration,
            )
        return {**metrics, "improved": improved}

    def run(self, progress: Progress | None = None, on_step: StepHook | None = None) -> TrainResult:
        recipe, main = self.recipe, self.processes.is_main
        loader = self._loader()
        model: nn.Module = self.net
        if self.processes.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(self.net, device_ids=ids)
        if self.device.type == "cuda" and recipe.crop_size:
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels
        model.train()
        bar = progress(total=self.total, initial=self.iteration) if progress and main else None
        if self.rng is not None:
            restore_rng(self.rng)
        started = time.perf_counter()
        last_loss, metrics = math.nan, None
        interrupt = DeferredInterrupt().start()  # Ctrl-C stops after a whole step
        try:
            for images, labels in loader:
                value = self._step(model, images, labels)
                self.iteration += 1
                self.window = [self.window[0] + value, self.window[1] + 1]
                done, finished = self.iteration, self.iteration == self.total
                if done % recipe.log_every == 0 or finished:
                    last_loss = self.window[0] / self.window[1]
                    if main:
                        lr = self.optimizer.param_groups[0]["lr"]
                        self.log.write(
                            {
                                "iteration": done,
                                "epoch": (done - 1) // self.sampler.batches_per_epoch,
                                "loss": last_loss,
                                "lr": lr,
                                "seconds": round(time.perf_counter() - started, 3),
                            }
                        )
                    self.window = [0.0, 0]
                if bar is not None:
                    bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                    bar.update(1)
                if on_step is not None:
                    on_step(done, value)
                names = []
                validating = self.val_set is not None and (
                    finished or (recipe.val_every > 0 and done % recipe.val_every == 0)
                )
                if validating:
                    metrics = self._validate()
                    names = ["best.pt", "last.pt"] if metrics.pop("improved") else ["last.pt"]
                elif finished or (recipe.checkpoint_every and done % recipe.checkpoint_every == 0):
                    names = ["last.pt"]
                if names:
                    self._checkpoint(names)
                if main and (validating or finished):
                    plot_curves(self.log.records(), self.out / "curves.png", str(self.out))
                if not finished and self._stop_requested(interrupt):  # Ctrl-C: save, stop
                    if self.saved_iteration != self.iteration:
                        self._checkpoint(["last.pt"])
                    raise TrainingInterrupted(self.iteration, self.out / "last.pt", self.out)
        finally:
            interrupt.stop()
            if bar is not None:
                bar.close()
        return TrainResult(
            self.out,
            self.iteration,
            last_loss,
            self.best,
            self.best_iteration,
            metrics,
            time.perf_counter() - started,
            list(self.train_set.classes),
            self.init,
        )
