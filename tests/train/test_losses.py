"""Whole-image training equals patchwise training over every receptive field (section 3.4)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.models.geometry import receptive_field
from fcnseg.train.losses import lovasz_softmax_loss, segmentation_loss, soft_jaccard_loss


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 1),
    ).double()  # fmt: skip


def test_whole_image_loss_equals_sum_of_patch_losses_and_gradients():
    net = _net()
    size, stride = receptive_field(net.children())
    assert (size, stride) == (8, 2)
    x = torch.randn(1, 3, 20, 22, dtype=torch.float64)
    scores = net(x)  # (1, 4, 7, 8): one cell per receptive field
    labels = torch.randint(0, 4, scores.shape[:1] + scores.shape[2:])
    whole = segmentation_loss(scores, labels, normalize="sum")
    whole_grads = torch.autograd.grad(whole, list(net.parameters()))

    patches, patch_labels = [], []
    for i in range(scores.shape[-2]):
        for j in range(scores.shape[-1]):
            patches.append(x[0, :, stride * i : stride * i + size, stride * j : stride * j + size])
            patch_labels.append(labels[0, i, j])
    patch_scores = net(torch.stack(patches))  # (P, 4, 1, 1)
    patchwise = F.cross_entropy(
        patch_scores[:, :, 0, 0], torch.stack(patch_labels), reduction="sum"
    )
    patch_grads = torch.autograd.grad(patchwise, list(net.parameters()))
    torch.testing.assert_close(whole, patchwise)
    for a, b in zip(whole_grads, patch_grads):
        torch.testing.assert_close(a, b)


def test_normalisation_weights_and_ignore():
    scores = torch.randn(2, 3, 4, 5)
    labels = torch.randint(0, 3, (2, 4, 5))
    labels[0, 0, :] = 255
    mean = segmentation_loss(scores, labels)
    torch.testing.assert_close(mean, F.cross_entropy(scores, labels, ignore_index=255))
    total = segmentation_loss(scores, labels, normalize="sum")
    torch.testing.assert_close(total, mean * (labels != 255).sum())
    weight = torch.tensor([1.0, 2.0, 0.5])
    torch.testing.assert_close(
        segmentation_loss(scores, labels, weight=weight),
        F.cross_entropy(scores, labels, weight=weight, ignore_index=255),
    )


def test_loss_sampling_keeps_a_fraction_and_is_unbiased():
    scores = torch.randn(1, 3, 60, 60)
    labels = torch.randint(0, 3, (1, 60, 60))
    full = segmentation_loss(scores, labels, normalize="sum")
    g = torch.Generator().manual_seed(0)
    draws = [
        segmentation_loss(scores, labels, normalize="sum", sample_rate=0.25, generator=g)
        for _ in range(200)
    ]
    assert torch.stack(draws).mean() == pytest.approx(full.item(), rel=0.02)
    raw = segmentation_loss(
        scores, labels, normalize="sum", sample_rate=0.25, rescale=False, generator=g
    )
    assert raw < full * 0.4
    with pytest.raises(ValueError, match="sample_rate"):
        segmentation_loss(scores, labels, sample_rate=0)
    with pytest.raises(ValueError, match="normalize"):
        segmentation_loss(scores, labels, normalize="avg")


def test_lovasz_softmax_by_hand():
    """Three pixels, two classes: the sorted errors weighted by the Jaccard loss's steps."""
    p0 = torch.tensor([0.9, 0.4, 0.3])
    scores = torch.stack([p0, 1 - p0]).log()[None, :, None, :]  # softmax gives back p
    labels = torch.tensor([[[0, 0, 1]]])
    # class 0: errors .6 .3 .1 (truth 1 0 1), steps .5 1/6 1/3; class 1: .6 .3 .1 (0 1 0), .5 .5 0
    expected = ((0.6 * 0.5 + 0.3 / 6 + 0.1 / 3) + (0.6 * 0.5 + 0.3 * 0.5)) / 2
    assert lovasz_softmax_loss(scores, labels).item() == pytest.approx(expected, abs=1e-6)


def test_soft_jaccard_by_hand():
    """Three pixels, two classes: the soft IU of each class from the probabilities."""
    p0 = torch.tensor([0.9, 0.4, 0.3])
    scores = torch.stack([p0, 1 - p0]).log()[None, :, None, :]  # softmax gives back p
    labels = torch.tensor([[[0, 0, 1]]])
    # class 0: I = .9 + .4 = 1.3, U = (.9 + .4 + .3) + 2 - 1.3 = 2.3
    # class 1: I = .7, U = (.1 + .6 + .7) + 1 - .7 = 1.7
    expected = 1 - (1.3 / 2.3 + 0.7 / 1.7) / 2
    assert soft_jaccard_loss(scores, labels).item() == pytest.approx(expected, abs=1e-6)


# the mean-IU surrogates segmentation_loss can add, with the weight that adds each
IU_LOSSES = [(lovasz_softmax_loss, "lovasz_weight"), (soft_jaccard_loss, "jaccard_weight")]


@pytest.mark.parametrize("loss, _", IU_LOSSES)
def test_an_iu_loss_of_hard_predictions_is_one_minus_mean_iu(loss, _):
    """On 0/1 probabilities the Lovasz extension equals the Jaccard loss it extends, and the
    soft IU is the IU: 1 - IU, averaged over the classes in the labels; ignored pixels take no
    part, whatever their scores."""
    from fcnseg.evaluate.metrics import ConfusionMatrix

    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 5, (2, 8, 6), generator=generator)
    labels[labels == 4] = 255  # class 4 only among the ignored pixels' predictions
    labels[0, :2] = 255
    predicted = torch.randint(0, 5, (2, 8, 6), generator=generator)
    scores = F.one_hot(predicted, 5).movedim(-1, 1).float() * 100.0  # softmax: 0/1
    matrix = ConfusionMatrix(5)
    matrix.update(predicted, labels)
    present = labels[labels != 255].unique().tolist()
    iu = [matrix.compute()["iu"][c] for c in present]
    expected = 1 - sum(iu) / len(iu)
    assert loss(scores, labels).item() == pytest.approx(expected, abs=1e-5)
    assert loss(scores, torch.full_like(labels, 255)).item() == 0.0


@pytest.mark.parametrize("loss, _", IU_LOSSES)
def test_an_iu_loss_has_gradients_and_perfect_scores_cost_nothing(loss, _):
    labels = torch.randint(0, 3, (1, 5, 6))
    labels[0, 0, 0] = 255
    perfect = F.one_hot(labels.clamp(max=2), 3).movedim(-1, 1).float() * 100.0
    assert loss(perfect, labels).item() == pytest.approx(0.0, abs=1e-6)
    scores = torch.randn(1, 3, 5, 6, requires_grad=True)
    loss(scores, labels).backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    assert scores.grad[0, :, 0, 0].abs().sum() == 0  # the ignored pixel


@pytest.mark.parametrize("loss, weight", IU_LOSSES)
def test_segmentation_loss_adds_the_weighted_iu_term(loss, weight):
    scores, labels = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    labels[0, 0] = 255
    plain = segmentation_loss(scores, labels)
    both = segmentation_loss(scores, labels, **{weight: 0.5})
    expected = plain + 0.5 * loss(scores, labels)
    assert both.item() == pytest.approx(expected.item(), rel=1e-6)


def test_ohem_keeps_the_hardest_pixels_by_hand():
    # One image of 2 x 3 pixels, two classes; the last pixel is ignored.
    scores = torch.tensor(
        [[[[2.0, 0.0, -1.0], [0.5, 3.0, 9.0]], [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]]]
    )
    labels = torch.tensor([[[0, 1, 0], [1, 1, 255]]])
    per_pixel = F.cross_entropy(scores, labels, ignore_index=255, reduction="none").flatten()
    # the kept pixels' losses: 0.127, 0.693, 2.127, 0.974, 3.049; the hardest 40 % (2 of 5):
    assert segmentation_loss(scores, labels, ohem_fraction=0.4) == pytest.approx(
        (per_pixel[2] + per_pixel[4]) / 2
    )
    # ceil(0.5 x 5) = 3 pixels; with class weights, the weighted losses rank and normalise
    weight = torch.tensor([1.0, 3.0])
    weighted = per_pixel * weight[labels.flatten().clamp(0, 1)]
    hardest = weighted[:5].topk(3).indices  # pixels 4, 3, 1 (class 1, weight 3)
    expected = weighted[hardest].sum() / weight[labels.flatten()[hardest]].sum()
    assert segmentation_loss(scores, labels, weight=weight, ohem_fraction=0.5) == pytest.approx(
        expected
    )
    plain = segmentation_loss(scores, labels)
    assert segmentation_loss(scores, labels, ohem_fraction=1.0) == plain
    assert segmentation_loss(scores, labels, ohem_fraction=0.0) == plain
    # sum normalisation: the hardest pixels' sum
    assert segmentation_loss(scores, labels, normalize="sum", ohem_fraction=0.4) == pytest.approx(
        per_pixel[2] + per_pixel[4]
    )


def test_label_smoothing_by_hand():
    # One image of 1 x 3 pixels, three classes; the last pixel is ignored.
    scores = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 1.0, 5.0]], [[-1.0, 0.5, 0.0]]]])
    labels = torch.tensor([[[0, 2, 255]]])
    minus_log_p = -scores.log_softmax(1)[0, :, 0, :2]  # K x 2 kept pixels
    e, k = 0.3, 3
    # target 1 - e + e / K on the label, e / K on the others
    by_pixel = (1 - e) * minus_log_p[labels[0, 0, :2], [0, 1]] + e / k * minus_log_p.sum(0)
    assert segmentation_loss(scores, labels, label_smoothing=e) == pytest.approx(
        by_pixel.mean().item()
    )
    # class weights weigh each class's share of the target; "mean" divides by the labels' weights
    w = torch.tensor([1.0, 2.0, 4.0])
    weighted = (1 - e) * w[labels[0, 0, :2]] * minus_log_p[labels[0, 0, :2], [0, 1]]
    weighted = weighted + e / k * (w[:, None] * minus_log_p).sum(0)
    assert segmentation_loss(scores, labels, weight=w, label_smoothing=e) == pytest.approx(
        (weighted.sum() / w[labels[0, 0, :2]].sum()).item()
    )
    assert segmentation_loss(scores, labels, label_smoothing=0.0) == segmentation_loss(
        scores, labels
    )
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        segmentation_loss(scores, labels, label_smoothing=1.0)


def test_ohem_sends_gradient_to_the_hardest_pixels_only():
    scores = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    scores.requires_grad_(True)
    labels = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(1))
    labels[0, 0] = 255
    segmentation_loss(scores, labels, ohem_fraction=0.25).backward()
    touched = scores.grad.abs().sum(1) > 0
    per_pixel = F.cross_entropy(scores.detach(), labels, ignore_index=255, reduction="none")
    kept = labels != 255
    take = -(-int(kept.sum()) // 4)  # ceil(0.25 x 50) = 13
    assert int(touched.sum()) == take and not touched[~kept].any()
    assert per_pixel[touched].min() >= per_pixel[kept & ~touched].max()
