"""NYUDv2 fusion: early (an extra conv1_1 channel started at the mean of the RGB filters) and
late (RGB and HHA FCNs, scores summed, trained end to end)."""

import pytest
import torch
import torch.nn.functional as F

import fcnseg
from fcnseg.models import FCN, MODELS, LateFusion, fcn32s
from fcnseg.models.fusion import fcn_latefusion
from fcnseg.models.surgery import TransplantError, transplant_vgg16
from helpers import TorchvisionStyleVGG16, randomize


def tiny(**kwargs):
    return fcn_latefusion(num_classes=4, width=1 / 16, **kwargs)


@pytest.fixture(scope="module")
def vgg_state():
    return randomize(TorchvisionStyleVGG16(width=1 / 16, fc=4096 // 16)).state_dict()


# ------------------------------------------------------------------------- early fusion


def test_the_extra_channel_starts_at_the_mean_of_the_rgb_filters(vgg_state):
    model = fcn32s(num_classes=4, in_channels=4, width=1 / 16)
    filled = transplant_vgg16(model, vgg_state, extra_channels="mean")
    assert "backbone.conv1_1.weight" in filled
    source = vgg_state["features.0.weight"]  # (4, 3, 3, 3)
    weight = model.backbone.conv1_1.weight  # (4, 4, 3, 3)
    assert weight.shape == (4, 4, 3, 3)
    assert torch.equal(weight[:, :3], source)
    assert torch.equal(weight[:, 3], source.mean(1))
    by_hand = (source[2, 0, 1, 1] + source[2, 1, 1, 1] + source[2, 2, 1, 1]) / 3
    assert torch.allclose(weight[2, 3, 1, 1], by_hand, rtol=0, atol=1e-7)
    assert torch.equal(model.backbone.conv1_1.bias, vgg_state["features.0.bias"])
    assert torch.equal(model.backbone.conv2_1.weight, vgg_state["features.5.weight"])


def test_zero_extra_channels_keep_the_rgb_net_and_a_mismatch_needs_a_choice(vgg_state):
    rgbd = fcn32s(num_classes=4, in_channels=4, width=1 / 16, dropout=0.0)
    transplant_vgg16(rgbd, vgg_state, extra_channels="zero")
    assert not rgbd.backbone.conv1_1.weight[:, 3].any()
    rgb = fcn32s(num_classes=4, width=1 / 16, dropout=0.0)
    transplant_vgg16(rgb, vgg_state, extra_channels="mean")  # 3 channels: nothing to add
    x = torch.randn(1, 4, 20, 20)
    with torch.no_grad():  # the extra channel contributes nothing yet
        assert torch.allclose(rgbd.backbone(x)["fc7"], rgb.backbone(x[:, :3])["fc7"], atol=1e-5)

    with pytest.raises(TransplantError, match="4; pass extra_channels='mean'"):
        transplant_vgg16(fcn32s(num_classes=4, in_channels=4, width=1 / 16), vgg_state)
    with pytest.raises(ValueError, match="extra_channels must be one of"):
        transplant_vgg16(rgbd, vgg_state, extra_channels="copy")
    with pytest.raises(TransplantError, match="net only 1"):
        transplant_vgg16(fcn32s(in_channels=1, width=1 / 16), vgg_state, extra_channels="mean")


# ------------------------------------------------------------------------- late fusion


def test_late_fusion_sums_the_scores_of_its_branches():
    model = tiny(dropout=0.0).eval()
    for branch in (model.rgb, model.hha):
        assert isinstance(branch, FCN) and branch.backbone.conv1_1.in_channels == 3
        for p in branch.parameters():  # non-zero score layers, so the sum is not trivial
            torch.nn.init.normal_(p, std=0.1)
    names = [n for n, _ in model.named_parameters()]
    assert names and all(n.startswith(("rgb.", "hha.")) for n in names)
    assert "rgb.score_fr.weight" in names and "hha.backbone.conv1_1.weight" in names
    x = torch.randn(2, 6, 21, 19)
    with torch.no_grad():
        scores = model(x)
        assert scores.shape == (2, 4, 21, 19)
        assert torch.equal(scores, model.rgb(x[:, :3]) + model.hha(x[:, 3:]))


def test_settings_names_and_errors():
    model = tiny(branch="fcn8s", in_channels=4)
    assert model.arch == "fcn_latefusion" and MODELS["fcn_latefusion"] is fcn_latefusion
    assert model.config.branch == "fcn8s" and model.config.in_channels == 4
    assert model.hha.backbone.conv1_1.in_channels == 1 and model.rgb.skips == ("pool4", "pool3")
    assert model.backbone is model.rgb.backbone and model.alignments == model.rgb.alignments
    with pytest.raises(ValueError, match="branch 'fcn4s' is not one of fcn32s"):
        tiny(branch="fcn4s")
    with pytest.raises(ValueError, match="in_channels must be > 3"):
        tiny(in_channels=3)
    with pytest.raises(ValueError, match="scores 4 classes, the HHA net 5"):
        LateFusion(fcn32s(4, width=1 / 16), fcn32s(5, width=1 / 16))


def test_transplant_fills_both_branches(vgg_state):
    model = tiny()
    filled = transplant_vgg16(model, vgg_state)
    for branch in ("rgb", "hha"):
        assert f"{branch}.backbone.conv1_1.weight" in filled
        conv = getattr(model, branch).backbone.conv1_1.weight
        assert torch.equal(conv, vgg_state["features.0.weight"])


def test_save_and_load_round_trip(tmp_path):
    model = tiny(branch="fcn16s", geometry="fast").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.1)
    fcnseg.save(model, tmp_path / "fusion.pt", classes=["a", "b", "c", "d"])
    loaded = fcnseg.load(tmp_path / "fusion.pt").eval()
    assert isinstance(loaded, LateFusion) and loaded.config == model.config
    x = torch.randn(1, 6, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_late_fusion_trains_end_to_end():
    torch.manual_seed(0)
    model = tiny(batch_norm=True, dropout=0.0, geometry="fast").train()
    # Class 1 in a square bright in RGB, class 2 in one bright in HHA: each stream matters.
    x = 0.1 * torch.randn(4, 6, 16, 16)
    labels = torch.zeros(4, 16, 16, dtype=torch.long)
    for n, (rgb, hha) in enumerate([(0, 8), (8, 0), (4, 12), (12, 4)]):
        x[n, 0, rgb : rgb + 4, :8] = 2.0
        labels[n, rgb : rgb + 4, :8] = 1
        x[n, 3, hha : hha + 4, 8:] = 2.0
        labels[n, hha : hha + 4, 8:] = 2
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        if not losses:  # both branches learn from the summed scores
            assert model.rgb.score_fr.weight.grad.abs().sum() > 0
            assert model.hha.score_fr.weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
