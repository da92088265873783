"""Issue 12, the training cases: 1 one run per folder, 4 divergence keeps a usable checkpoint and
resumes with a lower lr, 5 Ctrl-C checkpoints and resumes exactly, 6 a full disk loses nothing.

Runs that must be stopped from outside (a second run racing the first, SIGINT, SIGKILL during
a checkpoint write) run in a subprocess that the test itself signals."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fcnseg
from fcnseg.checkpoint import read, temporary_files
from fcnseg.errors import EXIT_DISK_FULL, EXIT_INTERRUPTED, RunFolderError
from fcnseg.train import TrainingDiverged, train
from fcnseg.train.recipe import dumps
from fcnseg.train.run_folder import LOCK_NAME, RunFolderLock
from fcnseg.train.trainer import Trainer
from helpers import assert_same_tensors, records, run_cli, tiny_recipe, write_tiny_dataset

SRC = str(Path(fcnseg.__file__).parents[1])


def _python(script: str, *args, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended early: {process.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fcnseg")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def data(tmp_path):
    return write_tiny_dataset(tmp_path / "data", train=4, val=1)


# --------------------------------------------------------------------------- 1 one run per folder

# Trains the recipe in argv[1]; after step 2 announces itself in argv[2] and waits.
PAUSED_RUN = """
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from fcnseg.train import train
from fcnseg.train.recipe import load

def pause(done, loss):
    if done == 2:
        Path(sys.argv[2]).write_text("paused")
        time.sleep(600)

train(load(sys.argv[1]), on_step=pause)
"""


def test_1_a_second_run_cannot_write_a_folder_a_run_holds(data, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    recipe = tiny_recipe(data, out, iterations=4, checkpoint_every=1, val_split="")
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text(dumps(recipe))
    first = _python(PAUSED_RUN, recipe_file, tmp_path / "paused")
    try:
        _wait_for(tmp_path / "paused", first)
        owner = json.loads((out / LOCK_NAME).read_text())
        assert owner["pid"] == first.pid
        written = {name: (out / name).read_bytes() for name in ("recipe.toml", "last.pt")}
        for extra in ([], ["--resume"]):
            assert run_cli("--recipe", recipe_file, "--out", out, "--seed", 1, *extra) == 2
            line = _error_line(capsys)
            assert line.startswith(
                f"fcnseg train: error: {out} is in use by another run (process {first.pid}, since"
            )
            assert line.endswith(
                f"lock {out / LOCK_NAME}): wait for it to end, or choose another --out"
            )
        assert {name: (out / name).read_bytes() for name in written} == written  # untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The lock outlives its process; the next run reports it and takes it over.
    assert (out / LOCK_NAME).exists()
    with caplog.at_level(logging.WARNING, logger="fcnseg.train.run_folder"):
        resumed = train(recipe, resume=True)
    assert resumed.iteration == 4
    assert f"took over the stale lock {out / LOCK_NAME} of process {first.pid}" in caplog.text
    assert not (out / LOCK_NAME).exists()  # released at the end


def test_1_the_lock_is_atomic_and_released(tmp_path):
    with RunFolderLock(tmp_path / "run") as held:
        assert json.loads(held.path.read_text())["pid"] == os.getpid()
        with pytest.raises(RunFolderError, match=f"process {os.getpid()}"):
            RunFolderLock(tmp_path / "run").acquire()  # even our own process: one holder
    assert not (tmp_path / "run" / LOCK_NAME).exists()


# --------------------------------------------------------------------------- 4 divergence


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])  # with an average of the weights too
def test_4_divergence_keeps_a_usable_checkpoint_and_resume_takes_a_lower_lr(
    data, tmp_path, ema_decay
):
    out = tmp_path / "run"
    recipe = tiny_recipe(
        data, out, iterations=2, checkpoint_every=1, val_split="", ema_decay=ema_decay
    )
    train(recipe)
    blown = dataclasses.replace(recipe, lr=1e30, iterations=6)
    with pytest.raises(TrainingDiverged) as caught:
        train(blown, resume=True)  # step 3 sends the weights to about 1e29
    message = str(caught.value)
    assert message.startswith("training diverged: at iteration 3 its weights (up to ")
    assert "score the last batch with NaN or inf; these weights were not saved." in message
    assert f"The last checkpoint, {out / 'last.pt'} (iteration 2), is intact." in message
    assert message.endswith("Lower the lr (or check the data) and resume: --resume --lr X.")
    assert caught.value.exit_status == 1
    kept = fcnseg.load(out / "last.pt")  # verified: finite weights
    assert read(out / "last.pt")["training"]["iteration"] == 2 and kept is not None
    result = train(dataclasses.replace(recipe, lr=1e-3, iterations=4), resume=True)
    assert result.iteration == 4
    events = [r for r in records(out) if r.get("event") == "resume"]
    assert events[-1] == {"iteration": 2, "event": "resume",
                          "changed": {"lr": [1e-2, 1e-3], "iterations": [2, 4]}}  # fmt: skip


def test_4_a_run_that_blows_up_at_once_writes_no_checkpoint(data, tmp_path, capsys):
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text(dumps(tiny_recipe(data, tmp_path / "run", val_split="")))
    code = run_cli("--recipe", recipe_file, "--lr", 1e30, "--checkpoint-every", 1)
    assert code == 1
    line = _error_line(capsys)
    assert line.startswith("fcnseg train: error: training diverged: at iteration 1 its cross")
    assert line.endswith("No checkpoint had been written yet. Lower the lr (or check the data) "
                         "and start again.")  # fmt: skip
    assert not (tmp_path / "run" / "last.pt").exists()


# --------------------------------------------------------------------------- 5 Ctrl-C


def test_5_ctrl_c_checkpoints_the_step_exits_130_and_resumes_exactly(
    data, tmp_path, capsys, monkeypatch
):
    recipe = tiny_recipe(data, tmp_path / "whole", iterations=7, dropout=0.3, flip=True,
                         crop_size=[20, 20], val_every=3, log_every=2)  # fmt: skip
    whole = train(recipe)
    out = tmp_path / "stopped"
    stopped = dataclasses.replace(recipe, out=str(out))
    recipe_file = tmp_path / "stopped.toml"
    recipe_file.write_text(dumps(stopped))
    step = Trainer._step

    def interrupted_step(self, *args):
        value = step(self, *args)
        if self.iteration + 1 == 5:  # Ctrl-C in the middle of step 5
            os.kill(os.getpid(), signal.SIGINT)
        return value

    monkeypatch.setattr(Trainer, "_step", interrupted_step)
    # what was installed before (Python's default handler, or SIG_IGN when the suite runs as a
    # background job of a non-interactive shell)
    handler = signal.getsignal(signal.SIGINT)
    assert run_cli("--recipe", recipe_file) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        f"fcnseg train: interrupted at iteration 5; wrote {out / 'last.pt'}; continue with: "
        f"fcnseg train --out {out} --resume"
    )
    assert signal.getsignal(signal.SIGINT) is handler  # put back
    monkeypatch.setattr(Trainer, "_step", step)
    assert read(out / "last.pt")["training"]["iteration"] == 5  # not 3: the step it stopped at
    assert temporary_files(out / "last.pt") == [] and not (out / LOCK_NAME).exists()
    resumed = train(stopped, resume=True)
    assert resumed.iteration == whole.iteration == 7
    for name in ("last.pt", "best.pt"):
        a, b = read(tmp_path / "whole" / name), read(out / name)
        assert_same_tensors(a["state_dict"], b["state_dict"], f"{name} state_dict")
        assert_same_tensors(a["training"]["optimizer"], b["training"]["optimizer"], name)
    assert records(tmp_path / "whole") == records(out)


# --------------------------------------------------------------------------- 6 disk full

# Trains argv[1]; the second checkpoint write is killed (SIGKILL) halfway through.
KILLED_WHILE_WRITING = """
import os, signal, sys
import torch
torch.set_num_threads(1)
import fcnseg.checkpoint
from fcnseg.train import train
from fcnseg.train.recipe import load

calls = []
save = torch.save
def killed_save(obj, handle, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        handle.write(b"PK half a checkpoint")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, handle, *args, **kwargs)

fcnseg.checkpoint.torch.save = killed_save
train(load(sys.argv[1]))
"""


def test_6_a_full_disk_stops_with_its_own_status_and_keeps_last_pt(
    data, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text(dumps(tiny_recipe(data, out, iterations=3, val_split="")))
    calls = []
    real = os.fsync

    def second_write_fails(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", second_write_fails)
    assert run_cli("--recipe", recipe_file, "--checkpoint-every", 1) == EXIT_DISK_FULL
    assert _error_line(capsys) == (
        f"fcnseg train: error: no space left on device writing {out / 'last.pt'} (the "
        "temporary file was removed; last.pt is unchanged)"
    )
    monkeypatch.setattr(os, "fsync", real)
    assert read(out / "last.pt")["training"]["iteration"] == 1
    assert temporary_files(out / "last.pt") == [] and not (out / LOCK_NAME).exists()


def test_6_resume_removes_the_temporary_file_of_a_killed_checkpoint_write(data, tmp_path, caplog):
    out = tmp_path / "run"
    recipe = tiny_recipe(data, out, iterations=3, checkpoint_every=1, val_split="")
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text(dumps(recipe))
    killed = _python(KILLED_WHILE_WRITING, recipe_file)
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    (left,) = temporary_files(out / "last.pt")
    assert left.read_bytes() == b"PK half a checkpoint"
    with caplog.at_level(logging.WARNING, logger="fcnseg.train.run_folder"):
        assert train(recipe, resume=True).iteration == 3
    assert f"removed 1 temporary file(s) of an interrupted checkpoint write: {left.name}" in (
        caplog.text
    )
    assert temporary_files(out / "last.pt") == []
