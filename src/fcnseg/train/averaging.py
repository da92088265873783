"""An exponential moving average of the weights (the recipe's ``ema_decay``).

With a decay ``d`` in (0, 1) a run keeps, beside the weights ``w_1, w_2, ...`` that the
optimiser reaches after each step, their exponentially weighted mean

    e_t = sum_s d^(t-s) w_s / sum_s d^(t-s)        (s = 1 .. t),

kept as a running update: ``e_1 = w_1`` and ``e_t = a_t e_(t-1) + (1 - a_t) w_t`` with
``a_t = d (1 - d^(t-1)) / (1 - d^t)``. Late in a run ``a_t`` is ``d`` (the plain moving
average); early it is smaller, so the average is a mean of the weights seen so far instead of
holding on to the first step's nearly random weights (the plain average ``e_t = d e_(t-1) +
(1 - d) w_t`` from ``e_1 = w_1`` still keeps ``d^(t-1)`` of them: 61 % after 500 steps at
d = 0.999). This is the bias correction of Adam's moment estimates (Kingma & Ba 2015),
applied to the weights. BatchNorm's running statistics are averaged alike
(``torch.optim.swa_utils.AveragedModel`` with ``use_buffers``).

The average is the net of the run: validation scores it, ``best.pt`` is chosen by it and
checkpoints hold it as the model that ``fcnseg.load`` reads; the optimised weights travel in
the checkpoint's ``training`` entry (``trained_state_dict``) so that a resumed run continues
both exactly. Averaging only reads the weights: the optimised weights of a run are those of the
same run without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def average_decay(decay: float, averaged: int) -> float:
    """``a_t``, the weight of the average so far when step ``t = averaged + 1`` joins a
    running mean of ``averaged`` steps' weights, exponentially weighted by ``decay``."""
    return decay * (1 - decay**averaged) / (1 - decay ** (averaged + 1))


def _exponential_mean(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    @torch.no_grad()
    def update(averages: list[Tensor], weights: list[Tensor], averaged: Tensor) -> None:
        a = average_decay(decay, int(averaged))
        if averages[0].is_floating_point():
            torch._foreach_lerp_(averages, weights, 1 - a)
        else:  # integer buffers (BatchNorm's num_batches_tracked)
            for average, weight in zip(averages, weights, strict=True):
                average.copy_(average * a + weight * (1 - a))

    return update


def weight_average(net: nn.Module, decay: float) -> AveragedModel | None:
    """An exponentially weighted mean of ``net``'s weights along the run (a copy, updated by
    ``update_parameters`` after each step), or None when ``decay`` is 0."""
    if decay == 0:
        return None
    return AveragedModel(net, multi_avg_fn=_exponential_mean(decay), use_buffers=True)


def average_state(average: AveragedModel) -> dict[str, Any]:
    """What a checkpoint's ``training`` entry keeps of ``average`` beside its weights (which
    are the checkpoint's model): how many steps it has averaged."""
    return {"updates": int(average.n_averaged)}


def restore_average(
    average: AveragedModel, weights: dict[str, torch.Tensor], state: dict[str, Any]
) -> None:
    """Set ``average`` back to a checkpoint's model ``weights`` and :func:`average_state`."""
    average.module.load_state_dict(weights)
    average.n_averaged.fill_(int(state["updates"]))
