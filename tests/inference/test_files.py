"""predict_images: DataLoader decoding, equal-size batches, legends, --show figures, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from segment_fixtures import random_fcn

import fcnseg
from fcnseg.data.synthetic import make_sample
from fcnseg.inference import files
from fcnseg.inference.files import predict_images


@pytest.fixture(scope="module")
def model():
    return random_fcn()


def write_images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, (h, w) in enumerate(sizes):
        image, _ = make_sample(i, h, w)
        arrays[f"im{i}"] = image.round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arrays[f"im{i}"]).save(folder / f"im{i}.png")
    return arrays


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_is_decoded_by_workers_and_batched_by_size(model, tmp_path, monkeypatch, workers):
    arrays = write_images(tmp_path / "in", [(40, 52), (40, 52), (40, 52), (33, 47), (40, 52)])
    batches = []
    real = files.segment
    monkeypatch.setattr(
        files, "segment", lambda m, b, **k: batches.append(len(b)) or real(m, b, **k)
    )
    ticks = []

    class Bar:
        def __init__(self, total):
            ticks.append(total)

        def update(self, n):
            ticks.append(n)

        def close(self):
            ticks.append("closed")

    result = predict_images(model, [tmp_path / "in"], tmp_path / "out", batch_size=2,
                            workers=workers, progress=Bar)  # fmt: skip
    assert batches == [2, 1, 1, 1]  # consecutive equal sizes, at most 2 at a time
    assert ticks == [5, 2, 1, 1, 1, "closed"]
    assert [image.name for image, _, _ in result.written] == [f"im{i}.png" for i in range(5)]
    for name, array in arrays.items():
        with Image.open(tmp_path / "out" / f"{name}.png") as label:
            assert label.mode == "P"
            assert torch.equal(torch.from_numpy(np.array(label)), fcnseg.segment(model, array))
        with Image.open(tmp_path / "out" / f"{name}_overlay.png") as blend:
            assert blend.size[1] >= array.shape[0] and blend.size[0] > array.shape[1]
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_show_with_truth_and_tiles_and_tta(model, tmp_path):
    arrays = write_images(tmp_path / "in", [(40, 52)])
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    truth = np.zeros((40, 52), np.uint8)
    truth[:, 30:] = 11  # not a class of this net: shown as unlabelled
    Image.fromarray(truth).save(truth_dir / "im0.png")
    out = tmp_path / "out"
    predict_images(model, [tmp_path / "in"], out, show=True, truth_dir=truth_dir, workers=0,
                   tile=160, overlap=96, flip=True, scales=(1.0, 1.5))  # fmt: skip
    with Image.open(out / "im0_show.png") as figure:
        assert figure.size[0] > 3 * 52
    expected = fcnseg.segment(model, arrays["im0"], flip=True, scales=(1.0, 1.5))
    with Image.open(out / "im0.png") as label:
        assert torch.equal(torch.from_numpy(np.array(label)), expected)


def test_unreadable_images_are_reported_and_setup_errors_raise(model, tmp_path):
    write_images(tmp_path / "in", [(20, 30)])
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = predict_images(model, [tmp_path / "in"], tmp_path / "out", workers=0)
    assert [p.name for p, _ in result.failed] == ["bad.png"]
    assert "cannot read image" in result.failed[0][1] and len(result.written) == 1
    with pytest.raises(ValueError, match="alpha must lie in 0..1"):
        predict_images(model, [tmp_path / "in"], tmp_path / "o2", alpha=2)
    with pytest.raises(FileNotFoundError, match="truth folder"):
        predict_images(model, [tmp_path / "in"], tmp_path / "o2", truth_dir=tmp_path / "none")
    assert not (tmp_path / "o2").exists()
