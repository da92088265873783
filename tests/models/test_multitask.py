"""Two-headed SIFT Flow nets: reference names, each head equal to a one-headed FCN on the same
weights, the summed loss, per-head metrics, save/load and a few training steps."""

import pytest
import torch
import torch.nn.functional as F

import fcnseg
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.models import MODELS, TwoHeadedFCN, fcn8s, fcn16s, fcn32s
from fcnseg.models.multitask import fcn8s_two_headed, fcn16s_two_headed, fcn32s_two_headed
from fcnseg.train.build import make_model
from fcnseg.train.multitask import TwoHeadedConfusion, two_headed_loss
from fcnseg.train.recipe import Recipe, RecipeError

# siftflow-fcn8s's head layers (net.py), each once per head.
REFERENCE_HEAD = ["score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3", "upscore8"]


def tiny(builder=fcn8s_two_headed, **kwargs):
    return builder(num_classes=5, num_geometric=3, width=1 / 16, **kwargs)


def _randomize_heads(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("backbone."):
                p.normal_(std=0.1)
    return model


def test_layer_names_are_the_references():
    model = tiny()
    layers = {n.rsplit(".", 1)[0] for n, _ in model.named_parameters()}
    heads = {n for n in layers if not n.startswith("backbone.")}
    assert heads == {f"{layer}{suffix}" for layer in REFERENCE_HEAD for suffix in ("_sem", "_geo")}
    assert model.score_fr_sem.out_channels == 5 and model.score_pool3_geo.out_channels == 3
    assert (
        model.upscore8_sem.kernel_size == (16, 16) and not model.upscore8_sem.weight.requires_grad
    )
    with torch.device("meta"):
        full = fcn8s_two_headed()
    assert full.score_fr_sem.weight.shape == (33, 4096, 1, 1)
    assert full.score_pool4_geo.weight.shape == (3, 512, 1, 1)
    sixteen = {n.rsplit(".", 1)[0] for n, _ in tiny(fcn16s_two_headed).named_parameters()}
    assert {"upscore2_sem", "score_pool4_geo", "upscore16_geo"} <= sixteen
    assert "score_pool3_sem" not in sixteen
    for arch in ("fcn8s_two_headed", "fcn16s_two_headed", "fcn32s_two_headed"):
        assert MODELS[arch](width=1 / 16).arch == arch


@pytest.mark.parametrize(
    ("builder", "single"),
    [(fcn8s_two_headed, fcn8s), (fcn16s_two_headed, fcn16s), (fcn32s_two_headed, fcn32s)],
)
def test_each_head_equals_a_one_headed_fcn_on_the_same_weights(builder, single):
    model = _randomize_heads(tiny(builder, dropout=0.0)).eval()
    x = torch.randn(2, 3, 23, 29)
    with torch.no_grad():
        scores = model(x)
    assert set(scores) == {"semantic", "geometric"}
    assert scores["semantic"].shape == (2, 5, 23, 29)
    assert scores["geometric"].shape == (2, 3, 23, 29)
    for output, suffix, classes in (("semantic", "_sem", 5), ("geometric", "_geo", 3)):
        reference = single(num_classes=classes, width=1 / 16, dropout=0.0).eval()
        state = {
            name.replace(suffix, ""): value
            for name, value in model.state_dict().items()
            if name.startswith("backbone.") or name.split(".")[0].endswith(suffix)
        }
        reference.load_state_dict(state)  # strict: every layer has its counterpart
        with torch.no_grad():
            assert torch.equal(scores[output], reference(x)), output


def test_fast_geometry_and_errors():
    model = tiny(geometry="fast").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 1, 7))
    assert out["semantic"].shape == (1, 5, 1, 7) and out["geometric"].shape == (1, 3, 1, 7)
    with pytest.raises(ValueError, match="geometry 'odd'"):
        tiny(geometry="odd")
    with pytest.raises(ValueError, match="geometric classes must be >= 1, got 0"):
        fcn8s_two_headed(num_geometric=0, width=1 / 16)
    recipe = Recipe(net="fcn8s_two_headed", width=1 / 16)
    built = make_model(recipe, 33, 3, num_geometric=3)  # the trainer builds them now
    assert built.num_classes == {"semantic": 33, "geometric": 3}
    with pytest.raises(RecipeError, match="geometric classes must be >= 1"):
        make_model(recipe, 33, 3, num_geometric=0)


def test_save_and_load_round_trip(tmp_path):
    model = _randomize_heads(tiny()).eval()
    fcnseg.save(model, tmp_path / "two.pt")
    loaded = fcnseg.load(tmp_path / "two.pt").eval()
    assert isinstance(loaded, TwoHeadedFCN) and loaded.config == model.config
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert all(torch.equal(a[k], b[k]) for k in ("semantic", "geometric"))


def test_the_loss_sums_two_cross_entropies_each_with_its_own_void():
    scores = {"semantic": torch.randn(2, 5, 4, 6), "geometric": torch.randn(2, 3, 4, 6)}
    labels = torch.stack(
        [torch.randint(0, 5, (2, 4, 6)), torch.randint(0, 3, (2, 4, 6))], dim=1
    )  # (2, 2, 4, 6)
    labels[:, 0, 0] = 255  # semantic void on the top row
    labels[:, 1, :, 0] = 255  # geometric void on the left column
    expected = F.cross_entropy(scores["semantic"], labels[:, 0], ignore_index=255)
    expected = expected + F.cross_entropy(scores["geometric"], labels[:, 1], ignore_index=255)
    assert torch.allclose(two_headed_loss(scores, labels), expected, rtol=1e-6)
    smoothed = sum(
        F.cross_entropy(scores[head], labels[:, i], ignore_index=255, label_smoothing=0.2)
        for i, head in enumerate(("semantic", "geometric"))
    )
    assert torch.allclose(two_headed_loss(scores, labels, label_smoothing=0.2), smoothed, rtol=1e-6)

    weight = torch.tensor([1.0, 2.0, 0.5])
    weighted = two_headed_loss(scores, labels, weights={"geometric": weight}, normalize="sum")
    expected = F.cross_entropy(
        scores["semantic"], labels[:, 0], ignore_index=255, reduction="sum"
    ) + F.cross_entropy(
        scores["geometric"], labels[:, 1], weight, ignore_index=255, reduction="sum"
    )
    assert torch.allclose(weighted, expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"expected \(N, 2, H, W\)"):
        two_headed_loss(scores, labels[:, 0])
    with pytest.raises(ValueError, match="scores lack"):
        two_headed_loss({"semantic": scores["semantic"]}, labels)


def test_metrics_come_from_one_confusion_matrix_per_head():
    scores = {"semantic": torch.randn(1, 5, 3, 4), "geometric": torch.randn(1, 3, 3, 4)}
    labels = torch.stack([scores["semantic"].argmax(1), scores["geometric"].argmax(1)], dim=1)
    labels[0, 1, 0] = (labels[0, 1, 0] + 1) % 3  # geometric wrong on the top row (4 of 12)
    labels[0, 0, :, 0] = 255  # semantic void on the left column
    confusion = TwoHeadedConfusion(5, 3)
    confusion.update(scores, labels)
    metrics = confusion.compute()
    assert metrics["semantic"]["pixel_acc"] == 1.0
    assert metrics["geometric"]["pixel_acc"] == pytest.approx(8 / 12)
    single = ConfusionMatrix(3)
    single.update(scores["geometric"].argmax(1), labels[:, 1])
    assert torch.equal(confusion.matrices["geometric"].matrix, single.matrix)
    assert confusion.matrices["semantic"].matrix.sum() == 9
    confusion.reset()
    assert confusion.matrices["semantic"].matrix.sum() == 0


def test_both_heads_train_together():
    torch.manual_seed(0)
    model = fcn8s_two_headed(
        num_classes=4, num_geometric=3, width=1 / 16, batch_norm=True, dropout=0.0, geometry="fast"
    ).train()
    # Geometric: sky on top, horizontal at the bottom, vertical between; semantic: a bright
    # square is class 1..3 by its colour channel, class 0 elsewhere.
    x = 0.1 * torch.randn(4, 3, 16, 16)
    labels = torch.zeros(4, 2, 16, 16, dtype=torch.long)
    labels[:, 1, :5], labels[:, 1, 5:11], labels[:, 1, 11:] = 0, 2, 1
    x[:, 2, :5] += 1.0  # a blue sky
    for n, (top, left) in enumerate([(2, 2), (8, 8), (4, 10), (10, 3)]):
        x[n, n % 3, top : top + 5, left : left + 5] = 2.0
        labels[n, 0, top : top + 5, left : left + 5] = n % 3 + 1
    labels[:, :, 0] = 255  # a void row in both
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    # 30 steps: scored in eval mode, BatchNorm uses its running statistics, which after 12 steps
    # still lag the batch's (geometric pixel acc 0.42 on one thread of an AMD EPYC, 0.65 on two;
    # after 30 steps 0.76 on one)
    for _ in range(30):
        loss = two_headed_loss(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
    confusion = TwoHeadedConfusion(4, 3)
    with torch.no_grad():
        confusion.update(model.eval()(x), labels)
    metrics = confusion.compute()
    assert 0 <= metrics["semantic"]["mean_iu"] <= 1 and metrics["geometric"]["pixel_acc"] > 0.5
