"""Several trained nets scoring as one: the mean of their class probabilities.

Nets trained from different random starts make different mistakes, and on a scene none of them
saw they disagree most where each is least sure; averaging their probabilities keeps what they
agree on. :class:`Ensemble` is itself a net, ``forward(N x C x H x W) -> N x K x H x W``, whose
scores are the logarithm of the members' mean softmax, so everything that scores a net
(evaluation, prediction, tiles, test-time augmentation, export) scores an ensemble unchanged:
the softmax of its scores is the mean probability, and their argmax is its label. A net scored
at another size than its input's (a checkpoint's ``input_scale``, a test scale) has its scores
resized before the softmax; an ensemble's are the log mean probability, resized as such.

Its members score the same classes from images of the same channels. Members trained with the
same preprocessing share one input. Members trained with different preprocessing (say one on
ImageNet statistics, one on each image's own) take a ``split_input``: the image normalised once
per member and concatenated along the channels (:class:`fcnseg.data.transforms.ConcatNormalize`,
which :func:`fcnseg.checkpoint.ensemble` records as the ensemble's preprocessing), member ``i``
reading channels ``i*C`` to ``(i+1)*C``. Either way each member sees exactly the input it was
trained on. ``backbone``, ``head``, ``config`` and ``alignments`` are the first member's, so
geometry tools (the receptive field that sizes tiles, the image's channels) read the ensemble as
they read that net.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fcnseg.models.config import FCNConfig, config_of, settings_of

ARCH = "ensemble"  # the ``arch`` of an ensemble's checkpoint


class Ensemble(nn.Module):
    """``log(mean_i softmax(member_i(x_i)))``: ``forward(N x C' x H x W) -> N x K x H x W``.

    ``members``: nets made by builders of :func:`fcnseg.models.list_models` (their arch and
    config are what a checkpoint of the ensemble records), each scoring the same ``K`` classes
    from the same ``C`` input channels. Parameters are named ``members.0.*``, ``members.1.*``...
    ``split_input``: each member has its own ``C`` channels of the input (``C' = M * C`` for
    ``M`` members, ``x_i`` the ``i``-th block); otherwise all read the same ``x`` (``C' = C``).
    """

    arch = ARCH

    def __init__(self, members: Sequence[nn.Module], split_input: bool = False) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one net")
        configs = []
        for index, member in enumerate(members):
            if isinstance(member, Ensemble):
                raise ValueError(
                    f"member {index} is an ensemble itself; give its members instead (an "
                    "ensemble's members are single nets, each weighing the same)"
                )
            try:
                configs.append(config_of(member))
            except ValueError as error:
                raise ValueError(f"member {index}: {error}") from error
        first = configs[0]
        for index, config in enumerate(configs[1:], start=1):
            if (config.num_classes, config.in_channels) != (first.num_classes, first.in_channels):
                raise ValueError(
                    f"member {index} scores {config.num_classes} classes from "
                    f"{config.in_channels} channels, member 0 {first.num_classes} from "
                    f"{first.in_channels}; an ensemble's members share input and classes"
                )
        self.members = nn.ModuleList(members)
        self.num_classes = first.num_classes
        self.split_input = bool(split_input)
        self.input_channels = first.in_channels * (len(members) if split_input else 1)  # C'

    @property
    def config(self) -> FCNConfig:
        return self.members[0].config

    @property
    def backbone(self) -> nn.Module:
        return self.members[0].backbone

    @property
    def head(self) -> str:
        return self.members[0].head

    @property
    def alignments(self) -> tuple:
        return self.members[0].alignments

    def settings(self) -> dict[str, Any]:
        """``{"members": [{"arch": ..., "settings": {...}}, ...]}``, with ``"split_input":
        True`` if so: what its checkpoint and exported files record, and what rebuilds it."""
        members = [{"arch": m.arch, "settings": settings_of(m)} for m in self.members]
        return {"members": members, **({"split_input": True} if self.split_input else {})}

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.input_channels:
            split = f" ({len(self.members)} members x {self.config.in_channels})"
            raise ValueError(
                f"the ensemble takes {self.input_channels} input channels"
                f"{split if self.split_input else ''}, got {x.shape[1]}"
            )
        inputs = x.chunk(len(self.members), 1) if self.split_input else [x] * len(self.members)
        log_probabilities = torch.stack(
            [member(x_i).log_softmax(1) for member, x_i in zip(self.members, inputs)]
        )
        return log_probabilities.logsumexp(0) - math.log(len(self.members))  # (N, K, H, W)


__all__ = ["ARCH", "Ensemble"]
