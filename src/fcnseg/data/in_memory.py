"""Samples kept in memory after their first read (the recipe's ``cache_samples``).

A training run reads every frame of a small dataset over a hundred times (CamVid's 367 train
frames: 130 times in the CPU recipe), and reading a 360 x 480 frame (9.5 ms) costs more than twice
what augmenting it does (the loader spends about 13 ms a frame).
:class:`InMemory` reads each pair once and then serves it from memory, exactly as the dataset
gives it: same values, same dtypes. Images of whole numbers 0..255 and labels 0..255 (both the
common case) are held as uint8, a quarter and an eighth of their float32 and int64 size (CamVid's
train split: about 250 MB). In a DataLoader worker the memory is the worker's, filled during
the first pass over the data; the training loop keeps one worker for the whole run.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

_Stored = tuple[Tensor, torch.dtype]


def _compact(tensor: Tensor) -> _Stored:
    """``tensor`` as uint8 when that holds every value exactly, with the dtype to give back."""
    if tensor.dtype != torch.uint8 and tensor.numel():
        exact = not tensor.is_floating_point() or torch.equal(tensor, tensor.round())
        if exact and tensor.min() >= 0 and tensor.max() <= 255:
            return tensor.to(torch.uint8), tensor.dtype
    return tensor.clone(), tensor.dtype


def _expand(stored: _Stored) -> Tensor:
    tensor, dtype = stored
    return tensor.to(dtype) if tensor.dtype != dtype else tensor.clone()  # never the cache itself


class InMemory(Dataset):
    """``dataset[i]``, read from ``dataset`` the first time and from memory after.

    The dataset must give the same pair at every read: one with a ``transform`` (random
    augmentation) is refused; augment the pairs this gives instead.
    """

    def __init__(self, dataset: Dataset) -> None:
        if getattr(dataset, "transform", None) is not None:
            raise ValueError(
                f"InMemory({dataset!r}): the dataset has a transform, so a read need not give "
                "the same pair twice; keep the untransformed dataset in memory and transform "
                "what it gives"
            )
        self.dataset = dataset
        self._pairs: dict[int, tuple[_Stored, _Stored]] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        index = range(len(self))[index]  # negative indices as a list's; IndexError past the end
        if index not in self._pairs:
            image, label = self.dataset[index]
            self._pairs[index] = (_compact(image), _compact(label))
        image, label = self._pairs[index]
        return _expand(image), _expand(label)

    def __repr__(self) -> str:
        return f"InMemory({self.dataset!r}, held={len(self._pairs)})"
