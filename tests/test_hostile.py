"""Issue 12: what a hostile or careless user tries, one test per case; each ends with one line
naming the file or flag, a documented exit status, and nothing lost or half-written.

The training cases (1 the run-folder lock, 4 divergence, 5 Ctrl-C, 6 disk full) are in
test_hostile_training.py, the Caffe and ONNX ones (3, 12) in interop/test_hostile_interop.py.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import fcnseg
from fcnseg.checkpoint import CheckpointError, atomic_save, model_record, temporary_files
from fcnseg.cli import build_parser, main
from fcnseg.data import open_dataset
from fcnseg.data.common import DatasetError, read_rgb
from fcnseg.errors import (
    EXIT_BAD_INPUT,
    EXIT_DISK_FULL,
    EXIT_STATUSES,
    DiskFullError,
    FcnsegError,
    NonFiniteError,
)
from fcnseg.inference.files import predict_images
from fcnseg.safe_files import DEFAULT_MAX_PIXELS, max_pixels, set_max_pixels
from helpers import NORMALIZE, tiny_model, write_checkpoint, write_folder_dataset


def run(*args) -> int:
    return main(["--threads", "1", *map(str, args)])


def one_error_line(capsys, command: str) -> str:
    """The single stderr line of a failed command (progress bars aside), without its prefix."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line]
    lines = [line for line in lines if not line.endswith("img/s]")]
    assert len(lines) == 1, err
    prefix = f"fcnseg {command}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix) :]


@pytest.fixture
def files(tmp_path):
    return write_checkpoint(tmp_path / "tiny.pt"), write_folder_dataset(tmp_path / "data")


def eval_args(checkpoint, root, *extra):
    return ["eval", "--checkpoint", checkpoint, "--dataset", "folder", "--root", root,
            "--split", "val", "--device", "cpu", *extra]  # fmt: skip


# --------------------------------------------------------------------------- the error design


def test_every_library_error_is_an_fcnseg_error():
    from fcnseg.data.common import DatasetError
    from fcnseg.interop.caffe import CaffeModelError
    from fcnseg.interop.caffe_import import CaffeImportError
    from fcnseg.interop.export import ExportError
    from fcnseg.models.surgery import TransplantError
    from fcnseg.train import TrainingDiverged
    from fcnseg.train.recipe import RecipeError

    kinds = (CheckpointError, DatasetError, RecipeError, CaffeModelError, CaffeImportError,
             ExportError, TransplantError, TrainingDiverged)  # fmt: skip
    assert all(issubclass(kind, FcnsegError) for kind in (*kinds, NonFiniteError, DiskFullError))
    assert TrainingDiverged(3, float("nan"), "").exit_status == 1
    assert CheckpointError("x").exit_status == EXIT_BAD_INPUT


def test_a_bug_keeps_its_traceback_and_help_lists_the_exit_statuses(monkeypatch, capsys):
    import fcnseg.models.zoo

    def broken(*args, **kwargs):
        raise ValueError("a bug deep inside")  # not an FcnsegError: not the user's fault

    monkeypatch.setattr(fcnseg.models.zoo, "table", broken)
    with pytest.raises(ValueError, match="a bug deep inside"):
        run("models")
    epilog = build_parser().epilog
    for code, text in EXIT_STATUSES.items():
        assert f"{code:<4} {text}" in epilog
    assert set(EXIT_STATUSES) == {0, 1, 2, 3, 130}


# --------------------------------------------------------------------------- 2 damaged checkpoint


def test_2_a_damaged_checkpoint_is_refused_naming_file_and_member(files, tmp_path, capsys):
    checkpoint, root = files
    with zipfile.ZipFile(checkpoint) as archive:
        largest = max(archive.infolist(), key=lambda info: info.file_size)
        header = largest.header_offset + 30 + len(largest.filename.encode()) + len(largest.extra)
    data = bytearray(checkpoint.read_bytes())
    size = min(4096, largest.file_size // 2)
    middle = header + largest.file_size // 2 - size // 2
    data[middle : middle + size] = b"\xff" * size
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    message = f"{damaged} is damaged: member {largest.filename} fails its CRC-32 check"
    with pytest.raises(CheckpointError, match="fails its CRC-32 check"):
        fcnseg.load(damaged)
    assert run(*eval_args(damaged, root)) == EXIT_BAD_INPUT
    assert one_error_line(capsys, "eval").startswith(message)


def test_2_non_finite_weights_are_refused_naming_the_tensor(tmp_path, capsys):
    record = model_record(tiny_model())
    record["state_dict"]["score_fr.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(record, path)  # torch.save, not atomic_save: fcnseg would not write it
    with pytest.raises(CheckpointError, match=f"{path}: tensor score_fr.weight holds NaN or inf"):
        fcnseg.load(path)


def test_2_eval_and_predict_fail_when_the_scores_are_not_finite(files, tmp_path, capsys):
    _, root = files
    model = tiny_model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(1e30)  # finite weights, scores that overflow to inf and NaN
    checkpoint = fcnseg.save(model, tmp_path / "huge.pt", preprocessing=NORMALIZE.spec())
    assert run(*eval_args(checkpoint, root)) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "mean IU" not in captured.out
    assert "im0.png: the net's scores hold NaN or inf values" in captured.err
    images = root / "images" / "val"
    assert run("predict", images, "--checkpoint", checkpoint, "--out", tmp_path / "p") == 2
    assert "the net's scores hold NaN or inf values" in one_error_line(capsys, "predict")
    assert not list((tmp_path / "p").glob("*.png"))


# --------------------------------------------------------------------------- 7 output paths


def test_7_output_paths_are_checked_before_any_work(files, tmp_path, capsys, monkeypatch):
    checkpoint, root = files
    a_file, a_dir = tmp_path / "file.txt", tmp_path / "folder"
    a_file.write_text("x")
    a_dir.mkdir()
    import fcnseg.checkpoint

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")

    monkeypatch.setattr(fcnseg.checkpoint, "load", no_work)  # export loads through this
    monkeypatch.setattr("fcnseg.cli.options.load_model", no_work)  # eval and predict
    cases = [
        (["predict", root, "--checkpoint", checkpoint, "--out", a_file],
         f"--out {a_file}: is a file; give a folder"),
        (eval_args(checkpoint, root, "--json", a_dir),
         f"--json {a_dir}: is a folder; give a file path"),
        (eval_args(checkpoint, root, "--json", a_file / "x.json"),
         f"--json {a_file}/x.json: {a_file} is a file, not a folder"),
        (["export", "--checkpoint", checkpoint, "--onnx", a_file / "x.onnx"],
         f"--onnx {a_file}/x.onnx: {a_file} is a file, not a folder"),
        (["export", "--checkpoint", checkpoint, "--torchscript", a_dir],
         f"--torchscript {a_dir}: is a folder; give a file path"),
    ]  # fmt: skip
    for args, message in cases:
        assert run(*args) == EXIT_BAD_INPUT, args
        assert one_error_line(capsys, args[0]) == message
    pytest.importorskip("google.protobuf")
    assert run("import-caffe", tmp_path / "none.caffemodel", "--out", a_dir) == EXIT_BAD_INPUT
    assert one_error_line(capsys, "import-caffe") == f"--out {a_dir}: is a folder; give a file path"


# --------------------------------------------------------------------------- 8 decompression bomb


def test_8_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "tiny.pt")
    bomb = tmp_path / "in" / "bomb.png"
    bomb.parent.mkdir()
    Image.new("L", (6000, 5000)).save(bomb, optimize=True)  # 30 MP, about 30 KB on disk
    assert bomb.stat().st_size < 100_000
    Image.fromarray(np.zeros((9, 12, 3), np.uint8)).save(tmp_path / "in" / "ok.png")
    with pytest.raises(DatasetError, match=r"bomb.png is 6000 x 5000 = 30,000,000 pixels, over"):
        read_rgb(bomb)
    code = run("predict", tmp_path / "in", "--checkpoint", checkpoint, "--out", tmp_path / "p")
    assert code == 1  # the others are written; the bomb is named
    err = capsys.readouterr().err
    assert f"{bomb} is 6000 x 5000 = 30,000,000 pixels, over the limit of 25,000,000" in err
    assert "--max-pixels N" in err
    assert (tmp_path / "p" / "ok.png").is_file() and not (tmp_path / "p" / "bomb.png").exists()
    try:  # the flag raises the limit
        assert run("--max-pixels", 1000, "predict", tmp_path / "in" / "ok.png", "--checkpoint",
                   checkpoint, "--out", tmp_path / "q") == 0  # fmt: skip
        assert max_pixels() == 1000
    finally:
        set_max_pixels(DEFAULT_MAX_PIXELS)


# --------------------------------------------------------------------------- 9 EXIF orientation


def _rotated_jpeg(path, height=12, width=20):
    """A JPEG stored ``height x width`` whose EXIF says: show it turned 90 degrees clockwise."""
    stored = np.zeros((height, width, 3), np.uint8)
    stored[:, : width // 2] = 255  # left half white as stored: top half white when shown
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    return path


def test_9_predict_applies_exif_orientation_and_readers_name_it(tmp_path, capsys):
    model = fcnseg.load(write_checkpoint(tmp_path / "tiny.pt"))
    (tmp_path / "in").mkdir()
    photo = _rotated_jpeg(tmp_path / "in" / "photo.jpg")
    result = predict_images(model, [photo], tmp_path / "out", workers=0)
    label = np.array(Image.open(result.written[0][1]))
    assert label.shape == (20, 12)  # as a viewer shows it: turned upright
    shown = read_rgb(photo, apply_exif=True)
    assert shown.shape == (3, 20, 12) and shown[:, :10].mean() > 200 > shown[:, 10:].mean() + 150
    # a dataset whose label matches the shown image, not the stored pixels
    root = tmp_path / "data"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    _rotated_jpeg(root / "images" / "val" / "a.jpg")
    Image.fromarray(np.zeros((20, 12), np.uint8), mode="L").save(root / "labels" / "val" / "a.png")
    (root / "classes.txt").write_text("a 0 0 0\nb 255 255 255\n")
    dataset = open_dataset("folder", root, "val")
    with pytest.raises(DatasetError) as caught:
        dataset[0]
    message = str(caught.value)
    assert "a.jpg is 12x20" in message and "a.png is 20x12" in message
    assert "a.jpg has EXIF orientation 6 (rotated 90 degrees clockwise when shown)" in message


# --------------------------------------------------------------------------- 10 folder checkpoint


def test_10_a_folder_as_checkpoint_is_named_as_a_folder(files, tmp_path, capsys):
    _, root = files
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert run(*eval_args(run_dir, root)) == EXIT_BAD_INPUT
    assert one_error_line(capsys, "eval") == f"checkpoint {run_dir} is a folder, not a file"
    write_checkpoint(run_dir / "last.pt")
    assert run(*eval_args(run_dir, root)) == EXIT_BAD_INPUT
    assert one_error_line(capsys, "eval") == (
        f"checkpoint {run_dir} is a folder, not a file (the run's checkpoint is {run_dir}/last.pt)"
    )


# --------------------------------------------------------------------------- 11 flags


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "-1", "models"], "argument --threads: must be an integer >= 1, got '-1'"),
        (["demo", "--iterations", "0"], "argument --iterations: must be an integer >= 1, got '0'"),
        (["demo", "--val-images", "0"], "argument --val-images: must be an integer >= 1, got '0'"),
        (["predict", "x.png", "--checkpoint", "c.pt", "--out", "o", "--alpha", "2"],
         "argument --alpha: must lie in 0..1, got '2'"),
        (["eval", "--checkpoint", "c", "--dataset", "d", "--root", "r", "--split", "s",
          "--limit", "0"], "argument --limit: must be an integer >= 1, got '0'"),
    ],
)  # fmt: skip
def test_11_bad_flags_are_argparse_errors_naming_the_flag(args, message, capsys):
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("fcnseg")


# --------------------------------------------------------------------------- 12 file mode, 6 disk


def test_12_checkpoints_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = fcnseg.save(tiny_model(), tmp_path / "shared.pt")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o002)
        path = fcnseg.save(tiny_model(), tmp_path / "group.pt")
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_6_a_full_disk_removes_the_temporary_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = atomic_save({"step": 1}, tmp_path / "last.pt")
    before = path.read_bytes()
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError) as caught:
        atomic_save({"step": 2}, path)
    monkeypatch.setattr(os, "fsync", real)
    assert str(caught.value) == (
        f"no space left on device writing {path} (the temporary file was removed; last.pt is "
        "unchanged)"
    )
    assert caught.value.exit_status == EXIT_DISK_FULL and caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and temporary_files(path) == []
