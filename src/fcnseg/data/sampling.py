"""Batches of whole images: group images of one size so a batch needs no padding."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler


class SizeGroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of indices whose images share one (H, W), shuffled each epoch.

    ``size_of(i)`` gives item i's size without loading it. Each group is cut into batches of
    ``batch_size`` (the last of a group may be smaller unless ``drop_last``); the batches of all
    groups are then shuffled together with ``generator``.
    """

    def __init__(
        self,
        size_of: Callable[[int], tuple[int, int]],
        num_items: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index in range(num_items):
            groups[tuple(size_of(index))].append(index)
        self.groups = list(groups.values())
        self.batch_size = batch_size
        self.generator = generator
        self.drop_last = drop_last

    def _batches(self) -> list[list[int]]:
        batches = []
        for group in self.groups:
            order = torch.randperm(len(group), generator=self.generator).tolist()
            shuffled = [group[i] for i in order]
            for start in range(0, len(shuffled), self.batch_size):
                batch = shuffled[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]

    def __len__(self) -> int:
        full, partial = 0, 0
        for group in self.groups:
            full += len(group) // self.batch_size
            partial += len(group) % self.batch_size > 0
        return full if self.drop_last else full + partial
