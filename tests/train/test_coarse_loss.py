"""Deep supervision (``coarse_loss_weight``), and exact resume with the run's other random
training aids (CutMix in the loader, MixStyle in the net)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fcnseg.train import train
from fcnseg.train.distributed import Processes
from fcnseg.train.losses import segmentation_loss
from fcnseg.train.recipe import RecipeError
from fcnseg.train.trainer import Trainer
from helpers import TINY_CLASSES as CLASSES
from helpers import kill_resume_and_compare, tiny_recipe, write_tiny_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("coarse") / "data")


def test_the_loss_adds_score_frs_own_loss_upsampled_to_the_labels(data, tmp_path) -> None:
    recipe = tiny_recipe(data, tmp_path / "a", geometry="fast", class_weights="median_frequency",
                         coarse_loss_weight=0.4)  # fmt: skip
    trainer = Trainer(recipe, Processes())
    net = trainer.net.train()
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, len(CLASSES), (2, 64, 96), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        coarse = net.score_fr(net.backbone(images)["fc7"])  # (2, K, 2, 3): stride 32
    assert coarse.shape[-2:] == (2, 3)
    scores = net(images)
    loss = trainer._loss(scores, labels)
    upsampled = F.interpolate(coarse, size=(64, 96), mode="bilinear", align_corners=False)
    expected = segmentation_loss(scores, labels, 255, trainer.weights) + 0.4 * segmentation_loss(
        upsampled, labels, 255, trainer.weights
    )
    assert torch.allclose(loss, expected) and trainer.coarse_scores == []
    net.eval()(images)  # scoring keeps nothing, nor a training-mode pass without gradients
    with torch.no_grad():
        net.train()(images)
    assert trainer.coarse_scores == []


def test_deep_supervision_trains_deterministically_and_needs_a_score_fr(data, tmp_path) -> None:
    recipe = tiny_recipe(data, tmp_path / "a", iterations=2, val_split="", coarse_loss_weight=0.5)
    first = train(recipe)
    assert first.final_loss == train(recipe.replace(out=str(tmp_path / "b"))).final_loss
    assert (
        first.final_loss
        != train(recipe.replace(out=str(tmp_path / "c"), coarse_loss_weight=0)).final_loss
    )
    trainer = Trainer(recipe.replace(out=str(tmp_path / "d")), Processes())
    trainer.net = torch.nn.Sequential()  # a net without score_fr (fcn_latefusion, two heads)
    with pytest.raises(RecipeError, match="coarse_loss_weight needs a net with a score_fr layer"):
        trainer._hook_coarse_scores()


def test_a_run_with_cutmix_mixstyle_and_deep_supervision_resumes_exactly(data, tmp_path) -> None:
    recipe = tiny_recipe(
        data,
        tmp_path / "whole",
        iterations=6,
        crop_size=[24, 24],
        cutmix_probability=0.7,
        mixstyle_stages=2,
        coarse_loss_weight=0.4,
        cache_samples=True,
        checkpoint_every=2,
        log_every=3,
    )
    whole, _ = kill_resume_and_compare(recipe, tmp_path, kill_after=3, saved_at=2)
    assert whole.iteration == 6
