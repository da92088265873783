"""The demo's figures on a shortened run: it learns, and what it reports is what it saved."""

import pytest
import torch

import fcnseg
from fcnseg.data.synthetic import SyntheticShapes
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.train.demo import NORMALIZE, DemoConfig, run_demo


@pytest.mark.slow  # about a minute on two cores: 200 of the demo's 500 iterations
def test_shortened_demo_learns_and_reports_its_saved_model(tmp_path):
    torch.set_num_threads(2)
    config = DemoConfig(iterations=200, train_images=800, val_images=40, grid_rows=2)
    result = run_demo(config, out_dir=tmp_path)
    metrics = result.metrics
    # All background would score mean IU ~0.17; the full 500-iteration run reaches ~0.85.
    assert metrics["mean_iu"] >= 0.6
    assert min(metrics["iu"]) > 0.3  # every shape class is found
    assert sum(result.losses[-20:]) < 0.5 * sum(result.losses[:20])
    assert (tmp_path / "demo_grid.png").is_file()

    model = fcnseg.load(tmp_path / "demo_fcn8s.pt").eval()
    assert fcnseg.metadata_of(model).classes == tuple(SyntheticShapes.classes)
    val = SyntheticShapes(config.val_images, config.sizes, seed=2 * config.seed + 2)
    matrix = ConfusionMatrix(val.num_classes)
    with torch.inference_mode():
        for image, label in (val[i] for i in range(len(val))):
            matrix.update(model(NORMALIZE(image, label)[0][None]).argmax(1)[0], label)
    recomputed = matrix.compute()
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "acc", "iu"):
        assert recomputed[key] == pytest.approx(metrics[key], rel=1e-6), key


def test_synthetic_items_are_fixed_by_seed():
    a, b = SyntheticShapes(3, seed=5), SyntheticShapes(3, seed=5)
    for i in range(3):
        torch.testing.assert_close(a[i][0], b[i][0])
        assert torch.equal(a[i][1], b[i][1])
    image, label = a[0]
    assert image.shape[1:] == label.shape and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 255
    assert set(label.unique().tolist()) <= set(range(5))
    with pytest.raises(ValueError, match="sizes"):
        SyntheticShapes(3, sizes=(4,))
