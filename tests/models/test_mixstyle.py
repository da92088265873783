"""MixStyle: each training image re-styled with a blend of its and another image's statistics."""

from __future__ import annotations

import pytest
import torch

from fcnseg.models import fcn2s
from fcnseg.models.backbones.mixstyle import EPS, MixStyle
from fcnseg.train.build import make_model
from fcnseg.train.recipe import Recipe


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(x, dim=(2, 3), correction=0)
    return mean, (var + EPS).sqrt()


def test_each_image_takes_the_blend_of_its_and_its_partners_statistics() -> None:
    x = torch.randn(5, 4, 6, 7) * (torch.rand(5, 4, 1, 1) * 3 + 0.2) + torch.randn(5, 4, 1, 1)
    mix = MixStyle(p=1.0, alpha=0.3).train()
    torch.manual_seed(11)
    out = mix(x)
    torch.manual_seed(11)  # its draws: mix or not, each image's lam, the pairing
    torch.rand(1)
    lam = torch.distributions.Beta(torch.tensor(0.3), torch.tensor(0.3)).sample((5,))[:, None]
    partner = torch.randperm(5)
    mean, sigma = _moments(x)
    out_mean, out_sigma = _moments(out)
    assert torch.allclose(out_mean, lam * mean + (1 - lam) * mean[partner], atol=1e-5)
    assert torch.allclose(out_sigma, lam * sigma + (1 - lam) * sigma[partner], atol=1e-4)
    # The content, each image normalised by its own statistics, is kept.
    content = (x - mean[..., None, None]) / sigma[..., None, None]
    restyled = (out - out_mean[..., None, None]) / out_sigma[..., None, None]
    assert torch.allclose(content, restyled, atol=1e-3)
    assert not torch.allclose(out, x)


def test_the_statistics_are_constants_in_the_backward_pass() -> None:
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    torch.manual_seed(0)
    MixStyle(p=1.0).train()(x).sum().backward()
    torch.manual_seed(0)
    torch.rand(1)
    lam = torch.distributions.Beta(torch.tensor(0.1), torch.tensor(0.1)).sample((3,))[:, None]
    partner = torch.randperm(3)
    _, sigma = _moments(x.detach())
    scale = (lam * sigma + (1 - lam) * sigma[partner]) / sigma  # d out / d x, nothing else
    assert torch.allclose(x.grad, scale[..., None, None].expand_as(x), atol=1e-6)


def test_it_passes_the_input_through_outside_training_alone_or_by_chance() -> None:
    x = torch.randn(4, 3, 5, 5)
    assert MixStyle(p=1.0).eval()(x) is x
    single = x[:1]
    assert MixStyle(p=1.0).train()(single) is single
    assert MixStyle(p=0.0).train()(x) is x
    torch.manual_seed(3)
    half = MixStyle(p=0.5).train()
    mixed = sum(half(x) is not x for _ in range(400))
    assert 160 < mixed < 240
    with pytest.raises(ValueError, match="p must be a probability"):
        MixStyle(p=1.5)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        MixStyle(alpha=0)


def test_a_net_with_mixstyle_has_the_same_weights_and_scores_the_same_outside_training() -> None:
    torch.manual_seed(0)
    plain = fcn2s(5, width=1 / 16, batch_norm=True, geometry="fast")
    styled = fcn2s(5, width=1 / 16, batch_norm=True, geometry="fast", mixstyle_stages=3)
    assert [name for name, _ in styled.backbone.named_children() if "mixstyle" in name] == [
        "mixstyle1",
        "mixstyle2",
        "mixstyle3",
    ]
    names = list(dict(styled.backbone.named_children()))
    assert names.index("mixstyle3") == names.index("pool3") - 1
    assert styled.state_dict().keys() == plain.state_dict().keys()
    styled.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 64, 80)
    assert torch.equal(styled.eval()(x), plain.eval()(x))
    assert torch.equal(styled.backbone(x)["pool3"], plain.backbone(x)["pool3"])
    torch.manual_seed(1)  # training: the features it re-styles differ (the score layers start at 0)
    assert not torch.allclose(
        styled.train().backbone(x)["pool3"], plain.train().backbone(x)["pool3"]
    )
    assert styled.backbone.coord_map("pool3") == plain.backbone.coord_map("pool3")
    with pytest.raises(ValueError, match="mixstyle_stages must be in 0 .. 5, got 6"):
        fcn2s(5, width=1 / 16, mixstyle_stages=6)


def test_the_recipes_mixstyle_stages_reach_the_vgg16_net() -> None:
    net = make_model(Recipe(net="fcn8s", width=0.0625, mixstyle_stages=2), 3, 3)
    assert isinstance(net.backbone.mixstyle2, MixStyle) and not hasattr(net.backbone, "mixstyle3")
    assert net.config.mixstyle_stages == 2
