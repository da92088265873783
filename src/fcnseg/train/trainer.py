"""The training loop: a recipe in, checkpoints, a metrics log and a learning curve out
(:func:`fcnseg.train.entry.train` runs it in a locked run folder).

Section 4.3 of the paper trains whole images (batch 1) with SGD, momentum 0.99 and the
unnormalised per-pixel loss; the recipes in ``recipes/`` hold those numbers. A run writes to
``recipe.out``:

- ``recipe.toml``: the resolved recipe (a recipe file again) and ``run.json`` (git revision,
  versions, processes, initialisation);
- ``last.pt`` and ``best.pt`` (best validation mean IU): model records that ``fcnseg.load``
  reads, plus a ``training`` entry (optimiser, loss scaler, iteration, RNG states, best score,
  class weights, recipe) from which ``resume=True`` continues exactly as if never stopped
  (what these files hold and how they are written and read back: :mod:`.checkpoints`);
- ``metrics.jsonl`` (:mod:`fcnseg.train.log`) and ``curves.png``.

With ``ema_decay`` the run's net is the moving average of the weights
(:mod:`fcnseg.train.averaging`): it is what validation scores and checkpoints hold as the model.

Under ``torchrun`` each process trains on its shard with ``DistributedDataParallel``; the
validation confusion matrix is summed over processes, and only rank 0 writes files.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from fcnseg.data.in_memory import InMemory
from fcnseg.data.transforms import collate_pad, normalized_channels
from fcnseg.errors import RunFolderError
from fcnseg.inference.predict import heads_of
from fcnseg.runtime import canonical_precision, precision_dtype
from fcnseg.train import checkpoints, distributed
from fcnseg.train.averaging import restore_average, weight_average
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
    paste_class_ids,
    training_layout,
    training_phases,
)
from fcnseg.train.checkpoints import TrainingDiverged
from fcnseg.train.distributed import Processes
from fcnseg.train.entry import Progress, StepHook, TrainResult
from fcnseg.train.log import MetricsLog, plot_curves
from fcnseg.train.losses import segmentation_loss
from fcnseg.train.multitask import check_heads, two_headed_loss
from fcnseg.train.recipe import Recipe, RecipeError
from fcnseg.train.run_folder import DeferredInterrupt, TrainingInterrupted, ignore_sigint_in_worker
from fcnseg.train.sampler import (
    KeyedSamples,
    ResumableBatchSampler,
    image_sizes,
    loss_sample_generator,
)
from fcnseg.train.state import capture_rng, restore_rng, seed_everything
from fcnseg.train.validation import validate, validation_record

logger = logging.getLogger(__name__)


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a recipe's ``amp`` (:mod:`fcnseg.runtime` precision names):
    bf16 on CPU or CUDA, fp16 on CUDA only (elsewhere a warning, and float32)."""
    if canonical_precision(amp) == "fp16" and device.type != "cuda":
        logger.warning("amp 'fp16' needs CUDA; training in float32 on %s", device)
        return None
    return precision_dtype(amp, device)


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
        self.normalizer = make_normalizer(recipe.preprocessing, image.shape[0], recipe.mean)
        self.ignore_index = self.train_set.ignore_index
        geometric = getattr(self.train_set, "geometric_classes", None)
        self.net = make_model(
            recipe,
            self.train_set.num_classes,
            normalized_channels(self.normalizer, image.shape[0]),
            num_geometric=len(geometric) if geometric is not None else None,
        )
        # A two-headed net (SIFT Flow) trains on one label map per head, its loss the sum of
        # the heads' (two_headed_loss) and its validation scored per head.
        self.heads = check_heads(recipe, tuple(heads_of(self.net)), label)
        # Checked now, not when the loader builds the transform.
        paste_class_ids(recipe.paste_classes, self.train_set.classes)
        how = (recipe.init, recipe.preprocessing, recipe.extra_channels, recipe.init_branches)
        self.init = InitReport("resume") if resume else initialize(self.net, *how)
        logger.info(self.init.summary())
        self.net.to(self.device)
        training_layout(self.net, recipe)
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
        # With ema_decay, the average of the weights is the run's net: validated, saved as the
        # model (averaging: fcnseg.train.averaging); `scored` is it, or the weights without.
        self.average = weight_average(self.net, recipe.ema_decay)
        self.scored: nn.Module = self.net if self.average is None else self.average.module
        # Deep supervision: score_fr's scores of each training forward, for their own loss.
        self.coarse_scores: list[Tensor] = []
        if recipe.coarse_loss_weight > 0:
            self._hook_coarse_scores()
        if resume:
            self._resume()
        if self.weights is None and recipe.class_weights != "none":
            self.weights = class_weights(self.train_set, recipe.class_weights, recipe.num_workers)
            logger.info("%s class weights: %s", recipe.class_weights, self.weights.tolist())
        if self.weights is not None:
            self.weights = self.weights.to(self.device)
        if processes.is_main:
            summary, changes = self.init.summary(), self.changes
            checkpoints.start_folder(
                self.out,
                recipe,
                resume,
                self.log,
                processes,
                self.iteration,
                self.total,
                summary,
                changes,
            )

    # ----------------------------------------------------------------------- resume and files

    def _resume(self) -> None:
        resumed = checkpoints.resume_state(
            self.out, self.recipe, self.net, self.optimizer, self.scaler, self.processes
        )
        self.changes = resumed.changes  # logged by start_folder
        self.iteration = self.saved_iteration = resumed.iteration
        self.best, self.best_iteration = resumed.best, resumed.best_iteration
        self.window, self.weights, self.rng = resumed.window, resumed.weights, resumed.rng
        if self.average is not None and resumed.average is not None:
            restore_average(self.average, *resumed.average)
        self.init.source = f"{resumed.path} at iteration {self.iteration}"
        logger.info("resuming %s at iteration %d", resumed.path, self.iteration)

    def _checkpoint(self, names: list[str]) -> None:
        """Write ``names`` (``last.pt``, ``best.pt``) from rank 0; every rank must call this."""
        batch, saved = self.last_batch, self.saved_iteration
        # the optimised weights, and (with ema_decay) their average, saved as the model
        for net in (self.net,) if self.average is None else (self.net, self.average.module):
            checkpoints.check_health(
                net, batch, self.ignore_index, self.processes, self.iteration, self.out, saved
            )
        states = distributed.gather(capture_rng(), self.processes)
        if not self.processes.is_main:
            return
        meta = checkpoints.checkpoint_meta(
            self.train_set, self.normalizer, self.ignore_index, self.recipe, self.heads
        )
        training = checkpoints.training_state(
            self.recipe,
            self.optimizer,
            self.scaler,
            iteration=self.iteration,
            total=self.total,
            rng=states,
            best=self.best,
            best_iteration=self.best_iteration,
            window=self.window,
            weights=self.weights,
            world_size=self.processes.world_size,
            trained=self.net,
            average=self.average,
        )
        checkpoints.write_checkpoint(self.out, names, self.scored, meta, training)
        if "last.pt" in names:
            self.saved_iteration = self.iteration

    # ----------------------------------------------------------------------- the loop

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of steps ``iteration .. total - 1``, each phase of the run (an early
        phase of smaller crops, if the recipe has one) from its own loader: a pure function of
        the step, so resuming is exact."""
        pairs = InMemory(self.train_set) if self.recipe.cache_samples else self.train_set
        for first, stop, phase in training_phases(self.recipe, self.total):
            if self.iteration < stop:
                yield from self._loader(pairs, max(first, self.iteration), stop, phase)

    def _loader(self, pairs: Dataset, start: int, stop: int, phase: Recipe) -> DataLoader:
        self.sampler.start, self.sampler.stop = start, stop
        augment = TrainTransform(
            phase, self.normalizer, self.ignore_index, pairs, self.train_set.classes
        )
        samples = KeyedSamples(pairs, augment)
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
            scores = model(images)  # (N, K, H, W), or {head: (N, K_head, H, W)}
        if isinstance(scores, dict):
            scores = {head: head_scores.float() for head, head_scores in scores.items()}
        else:
            scores = scores.float()
        loss = self._loss(scores, labels)
        mean = distributed.all_reduce_sum(loss.detach().clone(), self.processes)
        value = mean.item() / self.processes.world_size
        if not math.isfinite(value):
            raise TrainingDiverged(
                self.iteration + 1,
                value,
                checkpoints.kept(self.out, self.saved_iteration),
                resumable=self.saved_iteration is not None,
            )
        self.last_batch = (images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average is not None:
            self.average.update_parameters(self.net)
        return value

    def _hook_coarse_scores(self) -> None:
        score_fr = getattr(self.net, "score_fr", None)
        if not isinstance(score_fr, nn.Module):
            raise RecipeError(
                f"recipe: coarse_loss_weight needs a net with a score_fr layer; net "
                f"{self.recipe.net!r} has none"
            )

        def keep(module: nn.Module, inputs: Any, output: Tensor) -> None:
            # a training step's forward; not scoring, nor the health check before checkpoints
            if module.training and torch.is_grad_enabled():
                self.coarse_scores.append(output)

        score_fr.register_forward_hook(keep)

    def _coarse_loss(self, labels: Tensor) -> Tensor:
        """The loss of score_fr's scores alone, upsampled bilinearly to the labels' size (in the
        fast geometry a stride-32 cell's centre sits at 32 i + 15.5, where ``align_corners=False``
        puts it; the reference's 100-pixel padding shifts the grid, so there it is approximate),
        with the run's normalisation and class weights: deep supervision of the coarse, semantic
        layer, whose scores the skips otherwise only refine."""
        (coarse,) = self.coarse_scores
        self.coarse_scores.clear()
        coarse = F.interpolate(
            coarse.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False
        )
        return segmentation_loss(coarse, labels, self.ignore_index, self.weights, self.recipe.loss)

    def _loss(self, scores: Tensor | dict[str, Tensor], labels: Tensor) -> Tensor:
        """The recipe's loss: normalisation, class weights and, below a ``loss_sample_rate`` of
        1, a Bernoulli mask drawn from ``(seed, iteration, rank)`` (section 3.4); plus
        ``lovasz_weight`` times the Lovasz-softmax loss and ``jaccard_weight`` times the soft
        Jaccard loss over every labelled pixel; with ``ohem_fraction``, the cross-entropy of
        the hardest pixels only; with ``label_smoothing``, against smoothed targets (each head's
        of a two-headed net too). A two-headed net's is the sum of its heads'
        (labels N x 2 x H x W), as the reference's."""
        recipe = self.recipe
        sampling = recipe.loss_sample_rate < 1
        generator = (
            loss_sample_generator(recipe.seed, self.iteration, self.processes.rank)
            if sampling
            else None
        )
        if self.heads:
            return two_headed_loss(
                scores,
                labels,
                self.ignore_index,
                None,
                recipe.loss,
                sample_rate=recipe.loss_sample_rate if sampling else None,
                rescale=recipe.loss_sample_rescale,
                generator=generator,
                label_smoothing=recipe.label_smoothing,
            )
        loss = segmentation_loss(
            scores,
            labels,
            self.ignore_index,
            self.weights,
            recipe.loss,
            sample_rate=recipe.loss_sample_rate if sampling else None,
            rescale=recipe.loss_sample_rescale,
            generator=generator,
            lovasz_weight=recipe.lovasz_weight,
            jaccard_weight=recipe.jaccard_weight,
            ohem_fraction=recipe.ohem_fraction,
            label_smoothing=recipe.label_smoothing,
        )
        if recipe.coarse_loss_weight > 0:
            loss = loss + recipe.coarse_loss_weight * self._coarse_loss(labels)
        return loss

    def _validate(self) -> dict[str, Any]:
        assert self.val_set is not None
        metrics = validate(
            self.scored,
            self.val_set,
            self.normalizer,
            scale=self.recipe.resize,
            dtype=self.amp_dtype,
            processes=self.processes,
            limit=self.recipe.val_images,
            num_workers=self.recipe.num_workers,
        )
        chosen = metrics[self.recipe.best_metric]  # mean_iu unless the recipe says otherwise
        improved = math.isfinite(chosen) and (self.best is None or chosen > self.best)
        if improved:
            self.best, self.best_iteration = chosen, self.iteration
        if self.processes.is_main:
            self.log.write(validation_record(self.iteration, metrics, self.heads))
            logger.info(
                "iteration %d: val %s %.4f (best %.4f at %d)",
                self.iteration,
                self.recipe.best_metric,
                chosen,
                self.best if self.best is not None else math.nan,
                self.best_iteration,
            )
        return {**metrics, "improved": improved}

    def run(self, progress: Progress | None = None, on_step: StepHook | None = None) -> TrainResult:
        recipe, main = self.recipe, self.processes.is_main
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
            for images, labels in self._batches():
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
                # Ctrl-C in any process: all save and stop at the same step
                if not finished and distributed.any_process(interrupt.requested, self.processes):
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
            list(getattr(self.train_set, "geometric_classes", [])) if self.heads else [],
        )
