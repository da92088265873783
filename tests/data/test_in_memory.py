"""``fcnseg.data.InMemory`` (the recipe's ``cache_samples``): each pair read from disk once,
then served from memory exactly as the dataset gives it; a run with it trains bit for bit as
one without."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import Dataset

from fcnseg.checkpoint import read
from fcnseg.data import InMemory, open_dataset
from fcnseg.train import train
from helpers import assert_same_tensors, tiny_recipe, write_tiny_dataset


class Counting(Dataset):
    """Fixed pairs that count their reads."""

    transform = None

    def __init__(self, pairs):
        self.pairs = pairs
        self.reads = [0] * len(pairs)

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        self.reads[index] += 1
        image, label = self.pairs[index]
        return image.clone(), label.clone()


def _pairs():
    generator = torch.Generator().manual_seed(0)
    eight_bit = torch.randint(0, 256, (3, 5, 7), generator=generator).float()
    depth = torch.rand(1, 5, 7, generator=generator) * 1000  # not whole numbers
    label = torch.randint(0, 4, (5, 7), generator=generator)
    label[0] = 255  # ignore
    negative_ignore = label.clone()
    negative_ignore[0] = -1
    return [(eight_bit, label), (depth, negative_ignore), (eight_bit * 2, label.clone())]


def test_pairs_come_back_exactly_and_are_read_once():
    source = Counting(_pairs())
    cached = InMemory(source)
    assert len(cached) == 3
    for _ in range(3):
        for index in (0, 1, 2, -1):
            image, label = cached[index]
            expected_image, expected_label = source.pairs[index]
            assert image.dtype == expected_image.dtype and torch.equal(image, expected_image)
            assert label.dtype == expected_label.dtype and torch.equal(label, expected_label)
    assert source.reads == [1, 1, 1]
    with pytest.raises(IndexError):
        cached[3]


def test_8_bit_pairs_are_held_as_uint8_and_others_as_they_are():
    cached = InMemory(Counting(_pairs()))
    for index in range(3):
        cached[index]
    (image, image_dtype), (label, label_dtype) = cached._pairs[0]
    assert image.dtype == torch.uint8 and image_dtype == torch.float32
    assert label.dtype == torch.uint8 and label_dtype == torch.int64  # 255 fits
    (depth, _), (negative, _) = cached._pairs[1]
    assert depth.dtype == torch.float32 and negative.dtype == torch.int64  # not exact as uint8
    (doubled, _), _ = cached._pairs[2]
    assert doubled.dtype == torch.float32  # values up to 510


def test_changing_what_it_gave_leaves_the_memory_alone():
    source = Counting(_pairs())
    cached = InMemory(source)
    for index in range(3):
        image, label = cached[index]
        image.mul_(0).add_(7)
        label.fill_(1)
        again_image, again_label = cached[index]
        assert torch.equal(again_image, source.pairs[index][0])
        assert torch.equal(again_label, source.pairs[index][1])


def test_a_dataset_with_a_transform_is_refused(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    augmented = open_dataset("folder", data, "train", transform=lambda image, label: (image, label))
    with pytest.raises(ValueError, match="has a transform"):
        InMemory(augmented)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_run_that_caches_trains_bit_for_bit_as_one_that_does_not(tmp_path, num_workers):
    data = write_tiny_dataset(tmp_path / "data")
    plain = tiny_recipe(
        data,
        tmp_path / "plain",
        iterations=7,  # past one pass over the 6 frames: the later reads come from memory
        flip=True,
        scale_range=[0.75, 1.25],
        crop_size=[16, 16],
        brightness=0.3,
        val_split="",
        num_workers=num_workers,
    )
    train(plain)
    cached = dataclasses.replace(plain, out=str(tmp_path / "cached"), cache_samples=True)
    train(cached)
    assert_same_tensors(
        read(tmp_path / "plain" / "last.pt")["state_dict"],
        read(tmp_path / "cached" / "last.pt")["state_dict"],
        "weights",
    )
