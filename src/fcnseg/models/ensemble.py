"""Several trained nets scoring as one: the mean of their class probabilities.

Nets trained from different random starts make different mistakes, and on a scene none of them
saw they disagree most where each is least sure; averaging their probabilities keeps what they
agree on. :class:`Ensemble` is itself a net, ``forward(N x C x H x W) -> N x K x H x W``, whose
scores are the logarithm of the members' mean softmax, so everything that scores a net
(evaluation, prediction, tiles, test-time augmentation, export) scores an ensemble unchanged:
the softmax of its scores is the mean probability, and their argmax is its label. A net scored
at another size than its input's (a checkpoint's ``input_scale``, a test scale) has its scores
resized before the softmax; an ensemble's are the log mean probability, resized as such.

Its members share the input (the same channels, the same preprocessing: a checkpoint checks
that; :func:`fcnseg.checkpoint.ensemble`) and the classes. ``backbone``, ``head``, ``config``
and ``alignments`` are the first member's, so geometry tools (the receptive field that sizes
tiles, the input channels) read the ensemble as they read that net.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fcnseg.models.config import FCNConfig, config_of, settings_of

ARCH = "ensemble"  # the ``arch`` of an ensemble's checkpoint


class Ensemble(nn.Module):
    """``log(mean_i softmax(member_i(x)))``: ``forward(N x C x H x W) -> N x K x H x W``.

    ``members``: nets made by builders of :func:`fcnseg.models.list_models` (their arch and
    config are what a checkpoint of the ensemble records), each scoring the same ``K`` classes
    from the same ``C`` input channels. Parameters are named ``members.0.*``, ``members.1.*``...
    """

    arch = ARCH

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one net")
        configs = []
        for index, member in enumerate(members):
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

    def settings(self) -> dict[str, list[dict]]:
        """``{"members": [{"arch": ..., "settings": {...}}, ...]}``: what its checkpoint and
        exported files record, and what rebuilds it."""
        return {"members": [{"arch": m.arch, "settings": settings_of(m)} for m in self.members]}

    def forward(self, x: Tensor) -> Tensor:
        log_probabilities = torch.stack([member(x).log_softmax(1) for member in self.members])
        return log_probabilities.logsumexp(0) - math.log(len(self.members))  # (N, K, H, W)


__all__ = ["ARCH", "Ensemble"]
