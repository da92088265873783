"""Training batches as a pure function of (seed, iteration): what makes resuming exact.

Epoch ``e`` permutes the train split with a generator seeded from ``(seed, e)`` and draws one
augmentation seed per position from the same generator. Each process takes every
``world_size``-th position of the permutation (padded by wrapping around so all processes get
the same count, as ``DistributedSampler`` does) and cuts it into full batches. Batch ``t`` of the
run is therefore known without replaying batches ``0 .. t-1``: a resumed run starts at its
iteration, and nothing about the data needs saving. Each sample is augmented with a generator
seeded by its own seed, so DataLoader workers cannot change the result either.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from fcnseg.data.common import SegmentationDataset

logger = logging.getLogger(__name__)

Key = tuple[int, int]  # (sample index, augmentation seed)
SEED_RANGE = 2**32  # torch's CPU generator keeps 32 bits of a seed


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's order: ``(seed, epoch)`` hashed to a 32-bit seed."""
    return _hashed_generator(f"fcnseg:{seed}:{epoch}")


def loss_sample_generator(seed: int, iteration: int, rank: int = 0) -> torch.Generator:
    """The generator of one step's loss-sampling mask (section 3.4): ``(seed, iteration,
    rank)`` hashed to a 32-bit seed, so a resumed run draws the masks an unbroken one would."""
    return _hashed_generator(f"fcnseg-loss:{seed}:{iteration}:{rank}")


def _hashed_generator(key: str) -> torch.Generator:
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class ResumableBatchSampler(Sampler[list[Key]]):
    """Yields the batches of iterations ``start .. stop - 1`` of one process, as lists of keys.

    Args:
        num_items: samples in the train split.
        batch_size: samples per batch and process.
        seed: the run's seed.
        rank, world_size: this process and the number of processes.
        start, stop: the iterations to yield (``stop=None``: forever).
        sizes: ``(H, W)`` of each sample: with them every batch holds images of one size, so
            whole images of mixed sizes need no padding. Each epoch the permutation is split
            by size, each size's run cut into full batches, and all batches shuffled by the
            same generator; process ``r`` takes every ``world_size``-th batch.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        stop: int | None = None,
        sizes: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if num_items < 1:
            raise ValueError("the train split is empty")
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batch_size {batch_size} or rank {rank} of {world_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.stop = stop
        self.per_process = math.ceil(num_items / world_size)
        self.sizes = None if sizes is None else [tuple(size) for size in sizes]
        if self.sizes is not None:
            if len(self.sizes) != num_items:
                raise ValueError(f"{len(self.sizes)} sizes for {num_items} samples")
            counts: dict[tuple[int, ...], int] = {}
            for size in self.sizes:
                counts[size] = counts.get(size, 0) + 1
            self.grouped_batches = sum(n // batch_size for n in counts.values())
            if self.grouped_batches < world_size:
                raise ValueError(
                    f"batches of one image size: {self.grouped_batches} full batches of "
                    f"{batch_size} for {world_size} processes (sizes: {counts})"
                )
        self._cached: tuple[int, list[list[Key]]] | None = None

    @property
    def batches_per_epoch(self) -> int:
        """Full batches only (an incomplete last one is dropped, as a 1-image batch would break
        BatchNorm on small crops), unless the shard is smaller than one batch."""
        if self.sizes is not None:
            return self.grouped_batches // self.world_size
        return max(1, self.per_process // self.batch_size)

    def epoch(self, epoch: int) -> list[list[Key]]:
        """This process's batches of ``epoch``."""
        generator = epoch_generator(self.seed, epoch)
        order = torch.randperm(self.num_items, generator=generator)
        seeds = torch.randint(0, SEED_RANGE, (self.num_items,), generator=generator)
        if self.sizes is not None:
            return self._by_size(order, seeds, generator)
        total = self.per_process * self.world_size
        positions = torch.arange(total) % self.num_items  # wrap around to pad
        mine = positions[self.rank :: self.world_size].tolist()
        keys = [(int(order[p]), int(seeds[p])) for p in mine]
        size = self.batch_size
        return [keys[i * size : (i + 1) * size] for i in range(self.batches_per_epoch)]

    def _by_size(self, order: Tensor, seeds: Tensor, generator: torch.Generator) -> list[list[Key]]:
        """One epoch's batches of one image size each (see ``sizes``), this process's share."""
        assert self.sizes is not None
        runs: dict[tuple[int, ...], list[Key]] = {}
        for index, seed in zip(order.tolist(), seeds.tolist()):
            runs.setdefault(self.sizes[index], []).append((index, seed))
        size = self.batch_size
        batches = [
            keys[i * size : (i + 1) * size]
            for _, keys in sorted(runs.items())
            for i in range(len(keys) // size)
        ]
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return shuffled[self.rank :: self.world_size][: self.batches_per_epoch]

    def batch(self, iteration: int) -> list[Key]:
        """The batch of ``iteration`` (0-based) of the run."""
        epoch, index = divmod(iteration, self.batches_per_epoch)
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self.epoch(epoch))
        return self._cached[1][index]

    def __iter__(self) -> Iterator[list[Key]]:
        iteration = self.start
        while self.stop is None or iteration < self.stop:
            yield self.batch(iteration)
            iteration += 1

    def __len__(self) -> int:
        if self.stop is None:
            raise TypeError("an endless ResumableBatchSampler has no length")
        return max(0, self.stop - self.start)


def image_sizes(dataset: SegmentationDataset) -> list[tuple[int, int]]:
    """``(H, W)`` of every sample: the reader's ``size_of(i)`` where it has one (generated
    data knows sizes without drawing), else each label's shape (reads the whole split once)."""
    size_of = getattr(dataset, "size_of", None)
    if size_of is not None:
        return [tuple(size_of(index)) for index in range(len(dataset))]
    logger.info("reading %d labels for their sizes (batch_by_size)", len(dataset))
    return [tuple(dataset[index][1].shape[-2:]) for index in range(len(dataset))]


Augment = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]


class KeyedSamples(Dataset):
    """``samples[(index, seed)]``: ``dataset[index]`` augmented by a generator seeded ``seed``.

    ``augment(image, label, generator)`` draws all its randomness from ``generator``.
    """

    def __init__(self, dataset: Dataset, augment: Augment) -> None:
        self.dataset = dataset
        self.augment = augment
        self.generator = torch.Generator()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Key) -> tuple[Tensor, Tensor]:
        index, seed = key
        image, label = self.dataset[index]
        self.generator.manual_seed(seed)
        return self.augment(image, label, self.generator)
