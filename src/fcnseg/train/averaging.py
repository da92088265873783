"""An exponential moving average of the weights (the recipe's ``ema_decay``).

With a decay ``d`` in (0, 1) a run keeps, beside the weights the optimiser updates, their
average after each step, ``e_1 = w_1`` and ``e_t = d * e_(t-1) + (1 - d) * w_t``, with
BatchNorm's running statistics averaged alike (``torch.optim.swa_utils.AveragedModel`` with
``use_buffers``). The average is the net of the run: validation scores it, ``best.pt`` is
chosen by it and checkpoints hold it as the model that ``fcnseg.load`` reads; the optimised
weights travel in the checkpoint's ``training`` entry (``trained_state_dict``) so that a
resumed run continues both exactly. Averaging only reads the weights: the optimised weights of
a run are those of the same run without it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def weight_average(net: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``net`` (a copy, updated by ``update_parameters``),
    or None when ``decay`` is 0."""
    if decay == 0:
        return None
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


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
