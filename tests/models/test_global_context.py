"""ParseNet's global context on the VGG16 FCNs: the scores of the head's image-wide mean,
added to every cell of ``score_fr`` before the skips and the upsampling."""

from __future__ import annotations

import pytest
import torch

from fcnseg import checkpoint
from fcnseg.models import fcn2s, fcn8s, fcn8s_two_headed, fcn32s
from fcnseg.models.fcn import FCN
from fcnseg.train.build import make_model
from fcnseg.train.recipe import Recipe, RecipeError


def _net(builder, **settings) -> FCN:
    torch.manual_seed(0)
    net = builder(3, width=1 / 16, geometry="fast", global_context=True, **settings).eval()
    with torch.no_grad():  # zero-initialised as every score layer: give them something to add
        for layer in (net.score_fr, net.score_global):
            layer.weight.normal_(0, 0.1)
            layer.bias.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("builder", [fcn32s, fcn8s])
def test_the_fused_scores_are_score_fr_plus_the_scores_of_the_mean_head(builder):
    net = _net(builder)
    seen = {}
    net.score_fr.register_forward_hook(lambda m, args, out: seen.update(head=args[0], fr=out))
    first_upsampling = net.upsampling_layers()[0]
    first_upsampling.register_forward_hook(lambda m, args, out: seen.update(fused=args[0]))
    x = torch.randn(2, 3, 70, 90)
    with torch.no_grad():
        out = net(x)
        head = seen["head"]  # (2, C, 3, 3): fc7 at stride 32
        mean = head.sum((2, 3), keepdim=True) / (head.shape[-2] * head.shape[-1])
        by_hand = (
            seen["fr"]
            + (
                torch.einsum("kc,nc->nk", net.score_global.weight[:, :, 0, 0], mean[:, :, 0, 0])
                + net.score_global.bias
            )[:, :, None, None]
        )
    assert out.shape == (2, 3, 70, 90)
    torch.testing.assert_close(seen["fused"], by_hand, atol=1e-6, rtol=1e-5)
    # one image's context is its own: the second image alone gives its scores unchanged
    with torch.no_grad():
        torch.testing.assert_close(net(x[1:]), out[1:], atol=1e-5, rtol=1e-5)


def test_zero_initialised_it_leaves_the_net_as_it_was():
    torch.manual_seed(1)
    plain = fcn8s(3, width=1 / 16, geometry="fast").eval()
    torch.manual_seed(1)
    context = fcn8s(3, width=1 / 16, geometry="fast", global_context=True).eval()
    assert set(context.state_dict()) - set(plain.state_dict()) == {
        "score_global.weight",
        "score_global.bias",
    }
    context.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(context(x), plain(x))


def test_the_context_reaches_every_pixel():
    """Unlike the plain FCN, whose output at a pixel sees only its receptive field, a change
    anywhere in the image moves the scores everywhere, through the mean."""
    net = _net(fcn32s)
    with torch.no_grad():  # activations that neither vanish nor explode through 15 layers
        for layer in net.backbone.modules():
            if isinstance(layer, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    x = torch.randn(1, 3, 480, 480)  # wider than fc7's receptive field (404) and its upsampling
    y = x.clone()
    y[..., :32, :32] += 20.0
    far = (..., slice(440, None), slice(440, None))
    with torch.no_grad():
        before, after = net(x), net(y)
        net.global_context = False  # the same net without the mean's scores
        plain_before, plain_after = net(x), net(y)
    assert (before[far] - after[far]).abs().min() > 1e-4
    torch.testing.assert_close(plain_before[far], plain_after[far])


def test_it_survives_a_checkpoint_and_the_recipe_sets_it(tmp_path):
    net = _net(fcn2s, batch_norm=True)
    again = checkpoint.load(checkpoint.save(net, tmp_path / "net.pt"))
    assert again.config.global_context and again.global_context
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))

    recipe = Recipe(net="fcn2s", width=1 / 16, batch_norm=True, global_context=True)
    assert hasattr(make_model(recipe, 11, 3), "score_global")
    assert not hasattr(make_model(Recipe(net="fcn2s", width=1 / 16), 11, 3), "score_global")


def test_nets_without_it_refuse_it_by_name():
    with pytest.raises(RecipeError, match="'global_context'"):
        make_model(Recipe(net="fcn8s_resnet18", global_context=True), 3, 3)
    with pytest.raises(ValueError, match="global_context is for one-headed nets"):
        fcn8s_two_headed(width=1 / 16, global_context=True)
