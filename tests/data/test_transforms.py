"""Paired transforms, padded batching and median-frequency weights, on tiny CPU tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from fcnseg.data.class_weights import ClassCounts, class_pixel_counts, median_frequency_weights
from fcnseg.data.transforms import (
    CAFFE_MEAN_BGR,
    CaffeMeanSubtract,
    CenterCrop,
    ColorJitter,
    Compose,
    ConcatNormalize,
    CutMix,
    ImageNetNormalize,
    Normalize,
    PasteClasses,
    PerImageNormalize,
    RandomHorizontalFlip,
    RandomScaleCrop,
    Resize,
    collate_pad,
    largest_class_share,
    normalizer_from_spec,
    whole_image_preprocess,
)

IGNORE = 255
STRIPE = 3  # pixels per stripe in the alignment fixture
ROWS, COLS = 6, 8  # stripes down and across


def striped_pair(height: int = 17, width: int = 23) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose channels encode the label: channel 0 is the column-stripe id, channel 1
    the row-stripe id, channel 2 is 1 (pad marker); label = row_id * COLS + col_id."""
    col = (torch.arange(width) // STRIPE).clamp(max=COLS - 1)
    row = (torch.arange(height) // STRIPE).clamp(max=ROWS - 1)
    image = torch.stack(
        [
            col.float().expand(height, width),
            row.float()[:, None].expand(height, width),
            torch.ones(height, width),
        ]
    )
    label = row[:, None] * COLS + col[None, :]
    return image, label


def assert_aligned(image: torch.Tensor, label: torch.Tensor, pad: float = -1.0) -> None:
    """Padding matches ignore exactly; elsewhere the label's stripe ids are the nearest source
    pixel's, so each lies within 0.5 of the bilinearly resampled image channel."""
    padded = image[2] == pad
    assert torch.equal(padded, label == IGNORE)
    valid = ~padded
    col_id, row_id = (label % COLS).float(), (label // COLS).float()
    assert (image[0] - col_id)[valid].abs().max() <= 0.5 + 1e-5
    assert (image[1] - row_id)[valid].abs().max() <= 0.5 + 1e-5


# --------------------------------------------------------------------------- spatial alignment


def test_scale_crop_flip_keep_image_and_label_aligned() -> None:
    g = torch.Generator().manual_seed(0)
    transform = Compose(
        [
            RandomScaleCrop((20, 30), scale_range=(0.3, 2.5), image_pad=-1.0, generator=g),
            RandomHorizontalFlip(generator=g),
        ]
    )
    image, label = striped_pair()
    saw_padding = saw_no_padding = False
    for _ in range(30):
        out_image, out_label = transform(image, label)
        assert out_image.shape == (3, 20, 30) and out_label.shape == (20, 30)
        assert out_label.dtype == torch.int64
        assert_aligned(out_image, out_label)
        padded = bool((out_label == IGNORE).any())
        saw_padding |= padded
        saw_no_padding |= not padded
    assert saw_padding and saw_no_padding


def test_multi_map_label_moves_with_image() -> None:
    image, label = striped_pair()
    labels = torch.stack([label, label // COLS])  # K=2 maps: full id and row id
    g = torch.Generator().manual_seed(1)
    transform = Compose(
        [
            RandomScaleCrop(16, scale_range=(0.5, 2.0), image_pad=-1.0, generator=g),
            RandomHorizontalFlip(p=1.0),
        ]
    )
    for _ in range(10):
        out_image, out_labels = transform(image, labels)
        assert out_labels.shape == (2, 16, 16)
        assert_aligned(out_image, out_labels[0])
        valid = out_labels[0] != IGNORE
        assert torch.equal(out_labels[1][valid], out_labels[0][valid] // COLS)
        assert torch.equal(out_labels[1] == IGNORE, ~valid)


@pytest.mark.parametrize("scale", [0.37, 0.5, 1.3, 2.0])
def test_resize_label_is_centre_aligned_nearest(scale: float) -> None:
    image, label = striped_pair()
    out_image, out_label = Resize(scale)(image, label)
    size = (math.floor(17 * scale + 0.5), math.floor(23 * scale + 0.5))  # half rounds up
    assert out_image.shape[-2:] == size and out_label.shape == size
    expected = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")
    assert torch.equal(out_label, expected[0, 0].long())
    assert_aligned(out_image, out_label)


def test_flip_twice_is_identity_and_p_controls_it() -> None:
    image, label = striped_pair()
    flip = RandomHorizontalFlip(p=1.0)
    once_image, once_label = flip(image, label)
    assert torch.equal(once_image, image.flip(-1)) and torch.equal(once_label, label.flip(-1))
    twice_image, twice_label = flip(once_image, once_label)
    assert torch.equal(twice_image, image) and torch.equal(twice_label, label)
    same_image, same_label = RandomHorizontalFlip(p=0.0)(image, label)
    assert torch.equal(same_image, image) and torch.equal(same_label, label)


def test_padding_uses_ignore_index_and_image_pad() -> None:
    image = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(2, 4, 5)
    label = torch.arange(20).reshape(4, 5)
    crop = RandomScaleCrop((8, 7), scale_range=(1.0, 1.0), ignore_index=99, image_pad=(-1.0, -2.0))
    out_image, out_label = crop(image, label)  # padded to exactly 8 x 7, so the crop is at (0, 0)
    assert torch.equal(out_image[:, :4, :5], image) and torch.equal(out_label[:4, :5], label)
    assert (out_label[4:] == 99).all() and (out_label[:, 5:] == 99).all()
    assert (out_image[0, 4:] == -1).all() and (out_image[1, :, 5:] == -2).all()


def test_center_crop_pads_and_crops_from_the_middle() -> None:
    image, label = striped_pair(9, 12)
    out_image, out_label = CenterCrop((5, 6))(image, label)
    assert torch.equal(out_label, label[2:7, 3:9]) and torch.equal(out_image, image[:, 2:7, 3:9])
    out_image, out_label = CenterCrop(14, image_pad=-1.0)(image, label)
    assert out_label.shape == (14, 14) and torch.equal(out_label[:9, :12], label)
    assert_aligned(out_image, out_label)


@pytest.mark.parametrize("crop_size", [1, 7, (5, 11), (40, 3)])
def test_crop_size_is_exact(crop_size: int | tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(2)
    image, label = striped_pair()
    expected = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    for _ in range(5):
        out_image, out_label = RandomScaleCrop(crop_size, generator=g)(image, label)
        assert out_image.shape == (3, *expected) and out_label.shape == expected


def test_seeded_generator_is_deterministic() -> None:
    def run(seed: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        t = Compose([RandomScaleCrop(10, generator=g), RandomHorizontalFlip(generator=g)])
        image, label = striped_pair()
        return [t(image, label)[1] for _ in range(6)]

    first, again, other = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_largest_class_share_counts_labelled_pixels_only() -> None:
    label = torch.tensor([[0, 0, 0, 1], [2, IGNORE, IGNORE, IGNORE]])
    assert largest_class_share(label) == 3 / 5
    assert largest_class_share(torch.full((2, 3), IGNORE)) == 1.0  # nothing labelled
    assert largest_class_share(torch.stack([label, torch.zeros_like(label)])) == 3 / 5  # channel 0
    assert largest_class_share(torch.tensor([[0, 0, 1, 1, 1]]), ignore_index=1) == 1.0


def half_sky_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A 40 x 40 frame: sky (0) in the top 30 rows; below, a small thing (2) on road (1)."""
    label = torch.zeros(40, 40, dtype=torch.long)
    label[30:] = 1
    label[34:38, 10:14] = 2
    return label[None].float().expand(3, -1, -1).clone(), label


def test_crops_over_the_class_share_are_redrawn() -> None:
    """Of 10 x 10 crops of a frame three quarters sky, most lie in the sky; with a limit of
    0.9, every crop that one draw of ten could find mixed is mixed, the draw kept aligned."""
    image, label = half_sky_pair()
    plain = RandomScaleCrop(10, (1.0, 1.0), generator=torch.Generator().manual_seed(0))
    shares = [largest_class_share(plain(image, label)[1]) for _ in range(200)]
    assert sum(s == 1.0 for s in shares) > 100  # most plain crops hold one class
    limited = RandomScaleCrop(
        10, (1.0, 1.0), generator=torch.Generator().manual_seed(0), max_class_share=0.9
    )
    crops = [limited(image, label) for _ in range(200)]
    assert all(torch.equal(i[0].long(), lab) for i, lab in crops)  # image and label together
    shares = [largest_class_share(lab) for _, lab in crops]
    # a crop within the share needs its top in rows 21..29 (9 of 31): ten draws miss 3 % of
    # the time
    assert sum(s > 0.9 for s in shares) < 0.1 * 200
    plain_crops = [plain(image, label) for _ in range(200)]
    assert sum((lab == 2).any() for _, lab in crops) > sum(
        (lab == 2).any() for _, lab in plain_crops
    )


def test_a_share_of_one_draws_as_the_plain_crop() -> None:
    """``max_class_share = 1``: no redraws, the generator's draws are the plain crop's."""
    image, label = half_sky_pair()
    a = RandomScaleCrop(10, (0.7, 1.3), generator=torch.Generator().manual_seed(5))
    b = RandomScaleCrop(
        10, (0.7, 1.3), generator=torch.Generator().manual_seed(5), max_class_share=1.0
    )
    for _ in range(20):
        assert torch.equal(a(image, label)[1], b(image, label)[1])
    with pytest.raises(ValueError, match=r"max_class_share must be in \(0, 1\], got 0"):
        RandomScaleCrop(10, max_class_share=0)
    with pytest.raises(ValueError, match="attempts must be >= 1, got 0"):
        RandomScaleCrop(10, max_class_share=0.5, attempts=0)


# --------------------------------------------------------------------------- normalisation


def test_caffe_mean_subtract_on_one_pixel() -> None:
    image = torch.tensor([10.0, 20.0, 30.0]).reshape(3, 1, 1)  # R, G, B
    out, label = CaffeMeanSubtract()(image, torch.zeros(1, 1, dtype=torch.long))
    expected = torch.tensor([30 - 104.00698793, 20 - 116.66876762, 10 - 122.67891434])
    assert torch.allclose(out.flatten(), expected.float())
    assert label.shape == (1, 1)


def test_caffe_extra_channels_pass_through_or_get_their_mean() -> None:
    rgbd = torch.tensor([10.0, 20.0, 30.0, 500.0]).reshape(4, 1, 1)
    label = torch.zeros(1, 1, dtype=torch.long)
    out, _ = CaffeMeanSubtract()(rgbd, label)
    assert out.shape == (4, 1, 1) and out[3].item() == 500.0
    out, _ = CaffeMeanSubtract(extra_mean=(400.0,))(rgbd, label)
    assert out[3].item() == 100.0 and out[0].item() == pytest.approx(30 - CAFFE_MEAN_BGR[0])
    batch, _ = CaffeMeanSubtract()(rgbd.expand(2, 4, 3, 3), label)  # N x C x H x W also works
    assert torch.allclose(batch[1, :, 2, 2], CaffeMeanSubtract()(rgbd, label)[0].flatten())


def test_imagenet_normalize_on_one_pixel() -> None:
    image = torch.tensor([0.0, 127.5, 255.0]).reshape(3, 1, 1)
    out, _ = ImageNetNormalize()(image, torch.zeros(1, 1, dtype=torch.long))
    expected = torch.tensor([(0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    assert torch.allclose(out.flatten(), expected)
    rgbd = torch.tensor([0.0, 127.5, 255.0, 3.0]).reshape(4, 1, 1)
    out, _ = ImageNetNormalize(extra_mean=(1.0,), extra_std=(4.0,))(rgbd, torch.zeros(1, 1))
    assert out[3].item() == 0.5 and torch.allclose(out[:3].flatten(), expected)


def test_normalize_depth_only() -> None:
    depth = torch.full((1, 2, 2), 3.0)
    out, _ = Normalize(mean=(1.0,), std=(2.0,))(depth, torch.zeros(2, 2, dtype=torch.long))
    assert torch.equal(out, torch.ones(1, 2, 2))


def test_per_image_normalize_by_hand() -> None:
    # channel 0: 0, 2, 4, 6 (mean 3, population std sqrt(5)); channel 1: constant 9
    image = torch.stack([torch.tensor([[0.0, 2.0], [4.0, 6.0]]), torch.full((2, 2), 9.0)])
    out, label = PerImageNormalize(eps=1.0)(image, "label")
    expected = (torch.tensor([[0.0, 2.0], [4.0, 6.0]]) - 3) / (math.sqrt(5) + 1)
    torch.testing.assert_close(out[0], expected)
    assert torch.equal(out[1], torch.zeros(2, 2)) and label == "label"  # flat: 0, not nan


def test_per_image_normalize_removes_exposure_and_white_balance() -> None:
    """A frame brighter, with more contrast and another tint per channel (x -> a_c x + b_c)
    normalises to the same input, up to eps; each image of a batch by its own statistics."""
    generator = torch.Generator().manual_seed(0)
    frame = torch.rand(3, 20, 30, generator=generator) * 200
    gain = torch.tensor([1.3, 0.9, 1.1]).reshape(3, 1, 1)
    offset = torch.tensor([20.0, -5.0, 10.0]).reshape(3, 1, 1)
    normalize = PerImageNormalize(eps=1e-6)
    batch, _ = normalize(torch.stack([frame, frame * gain + offset]), None)
    torch.testing.assert_close(batch[1], batch[0], atol=1e-5, rtol=0)
    alone, _ = normalize(frame, None)
    torch.testing.assert_close(batch[0], alone)
    assert torch.allclose(batch.mean((-2, -1)), torch.zeros(2, 3), atol=1e-5)
    assert normalizer_from_spec(normalize.spec()).eps == 1e-6
    with pytest.raises(ValueError, match="eps must be > 0"):
        PerImageNormalize(eps=0)


def test_a_part_of_an_image_is_normalised_with_the_whole_images_statistics() -> None:
    image = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(2, 6, 8)
    normalize = PerImageNormalize()
    fixed = whole_image_preprocess(normalize, image.to(torch.uint8))  # uint8 as tiles are
    whole, _ = normalize(image, None)
    part, _ = fixed(image[:, 2:5, 3:7], None)
    torch.testing.assert_close(part, whole[:, 2:5, 3:7])
    assert whole_image_preprocess(ImageNetNormalize(), image).__class__ is ImageNetNormalize


def test_concat_normalize_stacks_each_normalisers_output() -> None:
    """Each part sees the same image; their outputs lie side by side in the channels, in
    order, and a part of the image normalises as the whole did (per-image statistics fixed)."""
    image = torch.arange(3 * 4 * 6, dtype=torch.float32).reshape(3, 4, 6) * 3
    parts = [ImageNetNormalize(), PerImageNormalize()]
    concat = ConcatNormalize(parts)
    out, label = concat(image, "label")
    assert out.shape == (6, 4, 6) and label == "label"
    torch.testing.assert_close(out[:3], parts[0](image, None)[0])
    torch.testing.assert_close(out[3:], parts[1](image, None)[0])
    batch, _ = concat(torch.stack([image, image / 2]), None)
    torch.testing.assert_close(batch[1, 3:], parts[1](image / 2, None)[0])  # its own statistics
    rebuilt = normalizer_from_spec(concat.spec())
    assert [type(p) for p in rebuilt.parts] == [ImageNetNormalize, PerImageNormalize]
    assert rebuilt.spec() == concat.spec()
    part, _ = whole_image_preprocess(concat, image)(image[:, 1:3, 2:5], None)
    torch.testing.assert_close(part, out[:, 1:3, 2:5])
    with pytest.raises(ValueError, match="at least one"):
        ConcatNormalize([])


# --------------------------------------------------------------------------- batching


def test_collate_pad_shapes_and_pad_values() -> None:
    a = (torch.ones(3, 4, 6), torch.full((4, 6), 1))
    b = (torch.full((3, 5, 2), 2.0), torch.full((5, 2), 2))
    images, labels = collate_pad([a, b], ignore_index=IGNORE, image_pad=-7.0)
    assert images.shape == (2, 3, 5, 6) and labels.shape == (2, 5, 6)
    assert labels.dtype == torch.int64 and images.dtype == torch.float32
    assert (images[0, :, :4, :] == 1).all() and (images[0, :, 4:, :] == -7).all()
    assert (labels[0, 4:, :] == IGNORE).all() and (labels[0, :4, :] == 1).all()
    assert (images[1, :, :, 2:] == -7).all() and (labels[1, :, 2:] == IGNORE).all()
    assert (labels[1, :, :2] == 2).all()


def test_collate_pad_batch_of_one_matches_default_collate() -> None:
    sample = striped_pair()
    images, labels = collate_pad([sample])
    expected_images, expected_labels = default_collate([sample])
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


def test_collate_pad_multi_map_labels() -> None:
    a = (torch.zeros(1, 2, 2), torch.zeros(2, 2, 2, dtype=torch.long))
    b = (torch.zeros(1, 3, 1), torch.ones(2, 3, 1, dtype=torch.long))
    images, labels = collate_pad([a, b])
    assert images.shape == (2, 1, 3, 2) and labels.shape == (2, 2, 3, 2)
    assert (labels[0, :, 2, :] == IGNORE).all() and (labels[1, :, :, 1] == IGNORE).all()


# --------------------------------------------------------------------------- class weights

# Image A (2 x 2): class 0 three times, class 1 once; 4 labelled pixels.
# Image B (2 x 3): class 0 once, class 2 four times, one ignore; 5 labelled pixels.
# Class 3 never appears.
LABEL_A = torch.tensor([[0, 0], [0, 1]])
LABEL_B = torch.tensor([[0, 2, 2], [IGNORE, 2, 2]])


def test_class_pixel_counts_by_hand() -> None:
    counts = class_pixel_counts([LABEL_A, LABEL_B], num_classes=4)
    assert counts.pixels.tolist() == [4, 1, 4, 0]
    assert counts.image_pixels.tolist() == [4 + 5, 4, 5, 0]


def test_median_frequency_weights_by_hand() -> None:
    # freq = [4/9, 1/4, 4/5], median 4/9 -> weights [1, 16/9, 5/9], absent class 3 -> 0.
    weights = median_frequency_weights([LABEL_A, LABEL_B], num_classes=4)
    assert weights.dtype == torch.float32 and weights.shape == (4,)
    assert torch.allclose(weights, torch.tensor([1.0, 16 / 9, 5 / 9, 0.0]))
    counts = class_pixel_counts([LABEL_A, LABEL_B], num_classes=4)
    assert torch.equal(median_frequency_weights(counts, num_classes=4), weights)


def test_median_of_even_count_is_mean_of_middle_two() -> None:
    # freq = [1/4, 3/4] -> median 1/2 -> weights [2, 2/3].
    weights = median_frequency_weights([torch.tensor([[0, 1, 1, 1]])], num_classes=2)
    assert torch.allclose(weights, torch.tensor([2.0, 2 / 3]))


def test_batched_padded_labels_count_like_separate_images() -> None:
    _, labels = collate_pad([(torch.zeros(1, 2, 2), LABEL_A), (torch.zeros(1, 2, 3), LABEL_B)])
    batched = class_pixel_counts([labels], num_classes=4)
    separate = class_pixel_counts([LABEL_A, LABEL_B], num_classes=4)
    assert torch.equal(batched.pixels, separate.pixels)
    assert torch.equal(batched.image_pixels, separate.image_pixels)


# --------------------------------------------------------------------------- errors and repr


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RandomScaleCrop(-3), "crop_size"),
        (lambda: RandomScaleCrop((0, 5)), "crop_size"),
        (lambda: RandomScaleCrop(5, scale_range=(2.0, 0.5)), "scale_range"),
        (lambda: RandomScaleCrop(5, scale_range=(0.0, 1.0)), "scale_range"),
        (lambda: CenterCrop((4, 4, 4)), "crop_size"),
        (lambda: RandomHorizontalFlip(p=1.5), "p must be"),
        (lambda: Resize(0), "scale"),
        (lambda: ColorJitter(brightness=1.0), "brightness must be in"),
        (lambda: ColorJitter(saturation=-0.1), "saturation must be in"),
        (lambda: ColorJitter(hue=0.7), "hue must be in"),
        (lambda: ColorJitter(gamma=-0.1), "gamma must be in"),
        (lambda: ColorJitter(gamma=3.5), "gamma must be in"),
        (lambda: PasteClasses([], [1]), "donors is empty"),
        (lambda: CutMix([]), "donors is empty"),
        (lambda: CutMix([(torch.zeros(3, 2, 2), torch.zeros(2, 2))], 1.5), "p must"),
        (lambda: PasteClasses([(torch.zeros(3, 2, 2), torch.zeros(2, 2))], []), "class_ids"),
        (lambda: PasteClasses([(torch.zeros(3, 2, 2), torch.zeros(2, 2))], [1], 2), "p must"),
        (lambda: CaffeMeanSubtract(mean_bgr=(1.0, 2.0)), "mean_bgr"),
        (lambda: ImageNetNormalize(max_value=0), "max_value"),
        (lambda: ImageNetNormalize(extra_std=(1.0,)), "extra_std"),
        (lambda: Normalize(mean=(1.0, 2.0), std=(1.0,)), "std"),
        (lambda: class_pixel_counts([], num_classes=0), "num_classes"),
    ],
)
def test_bad_arguments_name_the_argument(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_channel_mismatch_is_reported() -> None:
    label = torch.zeros(2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="1 channels, expected at least 3"):
        CaffeMeanSubtract()(torch.zeros(1, 2, 2), label)
    with pytest.raises(ValueError, match="4 channels, expected 5"):
        ImageNetNormalize(extra_mean=(0.0, 0.0))(torch.zeros(4, 2, 2), label)
    with pytest.raises(ValueError, match="3 channels, expected 1"):
        Normalize(mean=(0.0,))(torch.zeros(3, 2, 2), label)
    with pytest.raises(ValueError, match="image_pad has 2 values but the image has 3"):
        CenterCrop(4, image_pad=(0.0, 0.0))(torch.zeros(3, 2, 2), label)


def test_bad_inputs_are_reported() -> None:
    with pytest.raises(ValueError, match="label size"):
        RandomHorizontalFlip()(torch.zeros(3, 2, 2), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="dtype must be floating"):
        Resize(0.5)(torch.zeros(3, 2, 2, dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        collate_pad([])
    with pytest.raises(ValueError, match=r"batch\[1\] has image channels 1"):
        collate_pad([(torch.zeros(3, 2, 2), LABEL_A), (torch.zeros(1, 2, 2), LABEL_A)])
    with pytest.raises(ValueError, match="value 7, which is neither a class"):
        class_pixel_counts([torch.tensor([[0, 7]])], num_classes=4)
    with pytest.raises(ValueError, match="no labelled pixels"):
        median_frequency_weights([torch.full((2, 2), IGNORE)], num_classes=3)
    with pytest.raises(ValueError, match=r"ClassCounts.pixels has shape \(3,\)"):
        median_frequency_weights(ClassCounts(torch.ones(3), torch.ones(3)), num_classes=4)


def test_reprs_show_arguments() -> None:
    text = repr(Compose([RandomScaleCrop(321, scale_range=(0.5, 1.5)), RandomHorizontalFlip(0.3)]))
    assert "RandomScaleCrop(crop_size=(321, 321), scale_range=(0.5, 1.5)" in text
    assert "RandomHorizontalFlip(p=0.3)" in text
    assert "mean_bgr=(104.00698793" in repr(CaffeMeanSubtract())
    assert "std=(0.229, 0.224, 0.225)" in repr(ImageNetNormalize())


def _jitter_with(draws: list[float], **amounts: float) -> ColorJitter:
    jitter = ColorJitter(**amounts)
    it = iter(draws)
    jitter._factor = lambda amount: 1.0 if amount == 0 else 1.0 - amount + 2 * amount * next(it)
    return jitter


def test_color_jitter_by_hand() -> None:
    label = torch.arange(4).reshape(2, 2)
    # one grey pixel and one coloured: brightness x1.2 (draw 1.0 of amount 0.2)
    image = torch.tensor([[[100.0, 200.0]], [[100.0, 100.0]], [[100.0, 0.0]]])
    out, same = _jitter_with([1.0], brightness=0.2)(image, label[:1])
    assert torch.allclose(out, image * 1.2) and torch.equal(same, label[:1])
    # contrast x0.5 around the image's mean luma
    luma = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    out, _ = _jitter_with([0.0], contrast=0.5)(image, label[:1])
    assert torch.allclose(out, (image - luma.mean()) * 0.5 + luma.mean())
    # saturation 0.5 blends each pixel with its own luma; a grey pixel is unchanged
    out, _ = _jitter_with([0.0], saturation=0.5)(image, label[:1])
    assert torch.allclose(out, (image - luma) * 0.5 + luma)
    assert torch.allclose(out[:, :, 0], image[:, :, 0])
    # clamped to 0..255; extra channels (depth) pass through
    rgbd = torch.cat([image, torch.full((1, 1, 2), 7.0)])
    out, _ = _jitter_with([1.0], brightness=0.9)(rgbd, label[:1])
    assert out.max() == 255.0 and torch.equal(out[3], rgbd[3])


def test_color_jitter_is_seeded_and_draws_only_what_it_uses() -> None:
    image, label = torch.rand(3, 8, 8) * 255, torch.zeros(8, 8, dtype=torch.long)
    a = ColorJitter(0.4, 0.4, 0.4, generator=torch.Generator().manual_seed(3))(image, label)[0]
    b = ColorJitter(0.4, 0.4, 0.4, generator=torch.Generator().manual_seed(3))(image, label)[0]
    assert torch.equal(a, b) and not torch.equal(a, image)
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    out, _ = ColorJitter(generator=generator)(image, label)  # all amounts 0: the identity
    assert torch.equal(out, image) and torch.equal(generator.get_state(), state)
    with pytest.raises(ValueError, match="needs an RGB image"):
        ColorJitter(0.1)(torch.zeros(1, 2, 2), label[:2, :2])


def test_hue_turns_chroma_and_keeps_luma_and_greys() -> None:
    luma = torch.tensor(ColorJitter.LUMA, dtype=torch.float64)
    for turns in (0.0, 0.1, -0.3, 0.5):
        matrix = ColorJitter.hue_matrix(turns)
        assert torch.allclose(matrix.sum(dim=1), torch.ones(3, dtype=torch.float64))  # grey
        assert torch.allclose(luma @ matrix, luma)  # each pixel's luma
        assert torch.allclose(matrix @ ColorJitter.hue_matrix(-turns), torch.eye(3).double())
    assert torch.allclose(ColorJitter.hue_matrix(0.0), torch.eye(3).double())
    assert torch.allclose(
        ColorJitter.hue_matrix(0.25) @ ColorJitter.hue_matrix(0.25), ColorJitter.hue_matrix(0.5)
    )
    # half a turn negates the chroma: each pixel mirrored through its own grey, 2 * luma - rgb
    rgb = torch.tensor([[200.0], [100.0], [50.0]], dtype=torch.float64)
    assert torch.allclose(ColorJitter.hue_matrix(0.5) @ rgb, 2 * (luma @ rgb) - rgb)


def test_hue_jitter_draws_its_angle_from_the_generator() -> None:
    image = torch.tensor([[[200.0, 90.0]], [[100.0, 90.0]], [[50.0, 90.0]]])
    label = torch.zeros(1, 2, dtype=torch.long)
    out, same = ColorJitter(hue=0.2, generator=torch.Generator().manual_seed(4))(image, label)
    draw = torch.rand(1, generator=torch.Generator().manual_seed(4)).item()
    matrix = ColorJitter.hue_matrix(0.2 * (2 * draw - 1)).float()
    assert torch.allclose(out, torch.tensordot(matrix, image, 1).clamp(0, 255), atol=1e-4)
    assert torch.allclose(out[:, 0, 1], image[:, 0, 1])  # the grey pixel
    assert not torch.allclose(out[:, 0, 0], image[:, 0, 0]) and torch.equal(same, label)
    assert "hue=0.2" in repr(ColorJitter(hue=0.2))


def test_gamma_bends_the_tone_curve_by_a_drawn_exponent() -> None:
    image = torch.tensor([[[0.0, 63.75, 127.5, 255.0]]]).expand(3, 1, 4).clone()
    label = torch.zeros(1, 4, dtype=torch.long)
    out, same = ColorJitter(gamma=1.0, generator=torch.Generator().manual_seed(3))(image, label)
    draw = torch.rand(1, generator=torch.Generator().manual_seed(3)).item()
    exponent = 2.0 ** (2 * draw - 1)  # (1 + gamma) ** u, u uniform in [-1, 1]
    expected = 255 * torch.tensor([0.0, 0.25, 0.5, 1.0]) ** exponent
    assert torch.allclose(out, expected.expand(3, 1, 4), atol=1e-3) and torch.equal(same, label)
    assert out[0, 0, 0] == 0 and out[0, 0, 3] == 255  # black and white stay
    # the exponents are log-symmetric: as many draws brighten mid-grey as darken it
    jitter = ColorJitter(gamma=0.5, generator=torch.Generator().manual_seed(0))
    grey = torch.full((3, 1, 1), 127.5)
    mids = torch.stack([jitter(grey, label[:, :1])[0][0, 0, 0] for _ in range(400)])
    exponents = torch.log(mids / 255) / torch.log(torch.tensor(0.5))
    assert exponents.min() >= 1 / 1.5 - 1e-4 and exponents.max() <= 1.5 + 1e-4
    assert abs((mids > 127.5).float().mean().item() - 0.5) < 0.08
    assert "gamma=0.5" in repr(jitter)


class _Donors:
    """A dataset of raw pairs that records which frames were read."""

    def __init__(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.pairs, self.read = pairs, []

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.read.append(index)
        return self.pairs[index]


def test_paste_classes_copies_only_the_chosen_classes_pixels() -> None:
    image, label = torch.full((3, 2, 4), 7.0), torch.zeros(2, 4, dtype=torch.long)
    donor_image = torch.arange(24.0).reshape(3, 2, 4)
    donor_label = torch.tensor([[1, 2, 3, 255], [2, 0, 1, 1]])
    donors = _Donors([(donor_image, donor_label)])
    paste = PasteClasses(donors, [2, 255], p=1.0, generator=torch.Generator().manual_seed(0))
    out, out_label = paste(image, label)
    same = torch.Generator().manual_seed(0)  # its draws: paste or not, the donor, the mirroring
    torch.rand(1, generator=same), torch.randint(1, (1,), generator=same)
    flipped = torch.rand(1, generator=same).item() < 0.5
    source_image = donor_image.flip(-1) if flipped else donor_image
    source_label = donor_label.flip(-1) if flipped else donor_label
    mask = (source_label == 2) | (source_label == 255)
    assert torch.equal(out_label, torch.where(mask, source_label, label))
    assert torch.equal(out, torch.where(mask, source_image, image))
    assert mask.sum() == 3 and donors.read == [0]


def test_paste_classes_mirrors_half_the_donors_and_resizes_them() -> None:
    donor_label = torch.tensor([[1, 0, 0, 0]])  # class 1 only in the left column
    donors = _Donors([(torch.full((3, 1, 4), 9.0), donor_label)])
    generator = torch.Generator().manual_seed(1)
    paste = PasteClasses(donors, [1], p=1.0, generator=generator)
    columns = []
    for _ in range(40):
        _, out_label = paste(torch.zeros(3, 2, 8), torch.zeros(2, 8, dtype=torch.long))
        assert out_label.sum() == 4  # the 1 x 1 class pixel became 2 x 2, nearest-neighbour
        columns.append(int(out_label[0].nonzero()[0]))
    assert set(columns) == {0, 6}  # left column, or mirrored to the right


def test_paste_classes_skips_with_probability_and_refuses_mismatches() -> None:
    image, label = torch.rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.long)
    donors = _Donors([(torch.rand(3, 4, 4), torch.ones(4, 4, dtype=torch.long))])
    out, out_label = PasteClasses(donors, [1], p=0.0)(image, label)
    assert out is image and out_label is label and donors.read == []
    pastes = PasteClasses(donors, [1], p=0.5, generator=torch.Generator().manual_seed(2))
    pasted = sum(int(pastes(image, label)[1].any()) for _ in range(400))
    assert 160 < pasted < 240
    depth = _Donors([(torch.rand(1, 4, 4), torch.ones(4, 4, dtype=torch.long))])
    with pytest.raises(ValueError, match="donor 0 has 1 channels, the image 3"):
        PasteClasses(depth, [1], p=1.0)(image, label)
    with pytest.raises(ValueError, match="one head"):
        PasteClasses(donors, [1], p=1.0)(image, torch.zeros(2, 4, 4, dtype=torch.long))


def _box_of(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """The rows ``top:bottom`` and columns ``left:right`` of a mask that must be one box."""
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    assert mask[top:bottom, left:right].all() and mask.sum() == (bottom - top) * (right - left)
    return top, bottom, left, right


def test_cutmix_puts_a_box_of_the_donor_in_place_as_cutmix_draws_it() -> None:
    height, width = 30, 40
    image, label = torch.zeros(3, height, width), torch.zeros(height, width, dtype=torch.long)
    donor_image = torch.arange(3 * height * width, dtype=torch.float32).reshape(3, height, width)
    donors = _Donors([(torch.ones(3, 2, 2), torch.ones(2, 2)), (donor_image + 1, torch.full(
        (height, width), 4, dtype=torch.uint8))])  # fmt: skip
    mix = CutMix(donors, p=1.0, generator=torch.Generator().manual_seed(5))
    same = torch.Generator().manual_seed(5)  # its draws: mix or not, the donor, lam, centre
    areas = []
    for _ in range(50):
        out, out_label = mix(image, label)
        torch.rand(1, generator=same)
        index = int(torch.randint(2, (1,), generator=same))
        lam, cy, cx = torch.rand(3, generator=same, dtype=torch.float64).tolist()
        assert donors.read[-1] == index
        mask = out_label != 0
        if index == 0:  # a 2 x 2 donor, resized to the frame
            assert torch.allclose(out[:, mask], torch.ones(3, int(mask.sum())))
            continue
        assert out_label.dtype == torch.long and set(out_label[mask].tolist()) <= {4}
        if not mask.any():
            continue
        top, bottom, left, right = _box_of(mask)
        assert torch.equal(
            out[:, top:bottom, left:right], donor_image[:, top:bottom, left:right] + 1
        )
        assert not out[:, ~mask].any()
        # Centred on (cy H, cx W), with sides sqrt(1 - lam) H and W, clipped to the frame.
        side = (1 - lam) ** 0.5
        assert abs(top - max(cy * height - side * height / 2, 0)) <= 0.5
        assert abs(bottom - min(cy * height + side * height / 2, height)) <= 0.5
        assert abs(left - max(cx * width - side * width / 2, 0)) <= 0.5
        assert abs(right - min(cx * width + side * width / 2, width)) <= 0.5
        areas.append(mask.float().mean().item())
    assert len(areas) > 10 and max(areas) > 0.5 and min(areas) < 0.2


def test_cutmix_skips_with_probability_keeps_heads_and_refuses_mismatches() -> None:
    image, label = torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.long)
    donors = _Donors([(torch.rand(3, 8, 8), torch.ones(8, 8, dtype=torch.long))])
    out, out_label = CutMix(donors, p=0.0)(image, label)
    assert out is image and out_label is label and donors.read == []
    mixes = CutMix(donors, p=0.5, generator=torch.Generator().manual_seed(2))
    for _ in range(400):
        mixes(image, label)
    assert 160 < len(donors.read) < 240  # one donor read a mix
    two_heads = _Donors([(torch.rand(3, 8, 8), torch.ones(2, 8, 8, dtype=torch.long))])
    _, out_labels = CutMix(two_heads, p=1.0, generator=torch.Generator().manual_seed(0))(
        image, torch.zeros(2, 8, 8, dtype=torch.long)
    )
    assert torch.equal(out_labels[0], out_labels[1]) and out_labels.any()
    depth = _Donors([(torch.rand(1, 8, 8), torch.ones(8, 8, dtype=torch.long))])
    with pytest.raises(ValueError, match="donor 0 has 1 channels and 2-d labels, the image 3"):
        CutMix(depth, p=1.0)(image, label)
