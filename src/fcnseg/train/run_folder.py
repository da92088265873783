"""A run folder that one run writes, checkpoints worth keeping, and a Ctrl-C that loses nothing.

- :class:`RunFolderLock`: a run holds ``OUT/.lock`` from its first moment to its end. The file
  is created with ``O_CREAT | O_EXCL`` (atomic: of two runs started together exactly one gets
  it) and names the process (PID, host, start time). A second run into the folder, fresh or
  ``--resume``, stops with :class:`~fcnseg.errors.RunFolderError` naming that process. A lock
  whose process is gone (killed, or the machine rebooted) is reported and taken over; the take
  over is itself guarded by an ``O_EXCL`` file, so two runs cannot both take it.
- :func:`remove_stale_temporaries`: the lock holder deletes the ``.last.pt.*.tmp`` files that a
  run killed while writing a checkpoint left behind.
- :func:`unhealthy`: before a checkpoint is written, its weights must be finite and must score
  the last batch with finite values and a loss that has not blown up; otherwise the run has
  diverged and the older checkpoint is kept (weights of 4e28 are finite but score NaN).
- :class:`DeferredInterrupt`: while training, SIGINT (Ctrl-C) only sets a flag; the loop
  finishes its step, writes ``last.pt`` at that step and raises :class:`TrainingInterrupted`
  with the command that resumes it. A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcnseg.checkpoint import non_finite_tensor, temporary_files
from fcnseg.errors import RunFolderError

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
# Mean cross-entropy per labelled pixel, in nats, past which weights have blown up: guessing
# uniformly over K classes costs ln K (3.0 for 21 classes), and a net must score the true
# class 1000 below another on average to cost 1000. Weights of 1e28 cost about 1e28.
LOSS_BLOWN_UP = 1e3
CHECKPOINT_NAMES = ("last.pt", "best.pt")


# --------------------------------------------------------------------------- the lock


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), to tell a live
    process from a later one that reuses its PID; None where /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, counted after the command name


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the process a lock names still runs (True when it cannot be told)."""
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: assume it runs
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    started = owner.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def _read_owner(path: Path) -> dict[str, Any] | None:
    """The lock's contents; None if it vanished; {} if unreadable (half-written: stale)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        owner = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict[str, Any]) -> str:
    where = "" if owner.get("host") == socket.gethostname() else f" on {owner.get('host')}"
    since = f", since {owner['time']}" if owner.get("time") else ""
    return f"process {owner.get('pid')}{where}{since}"


class RunFolderLock:
    """``OUT/.lock``, held by one run; use as a context manager or acquire()/release()."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False

    def _record(self) -> bytes:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "process_start": _process_start(os.getpid()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        return (json.dumps(owner) + "\n").encode()

    def _create(self, path: Path) -> bool:
        """Create ``path`` holding our record, atomically; False if it exists."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(self._record())
        return True

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; :class:`RunFolderError` if a run holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a lock released between our attempts: try again
            if self._create(self.path):
                self.held = True
                return
            owner = _read_owner(self.path)
            if owner is None:
                continue
            if owner and _alive(owner):
                raise RunFolderError(
                    f"{self.folder} is in use by another run ({_describe(owner)}; lock "
                    f"{self.path}): wait for it to end, or choose another --out"
                )
            self._take_over(owner)
            if self.held:
                return
        raise RunFolderError(f"{self.folder}: could not take the lock {self.path}; try again")

    def _take_over(self, stale: dict[str, Any]) -> None:
        guard = self.path.with_name(LOCK_NAME + ".takeover")
        if not self._create(guard):
            raise RunFolderError(
                f"{self.folder}: another run is taking over the stale lock {self.path}; if none "
                f"is, delete {guard}"
            )
        try:
            if _read_owner(self.path) != stale:  # changed since we looked: not ours to take
                return
            self.path.unlink(missing_ok=True)
            if self._create(self.path):
                self.held = True
                logger.warning(
                    "took over the stale lock %s of %s, which is no longer running",
                    self.path,
                    _describe(stale) if stale else "a process (unreadable lock)",
                )
        finally:
            guard.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if self.held:
            owner = _read_owner(self.path)
            if owner and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the checkpoint temporaries a killed run left in ``folder`` (call with the lock
    held: then no other run is writing them); returns what was removed."""
    removed = []
    for name in CHECKPOINT_NAMES:
        for path in temporary_files(Path(folder) / name):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.warning(
            "removed %d temporary file(s) of an interrupted checkpoint write: %s",
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed


# --------------------------------------------------------------------------- divergence


@torch.no_grad()
def unhealthy(net: nn.Module, images: Tensor, labels: Tensor, ignore_index: int) -> str | None:
    """Why ``net`` must not be checkpointed, or None when it may.

    Its floating-point weights and buffers must be finite, and its scores of ``images``
    (N, C, H, W) must be finite with a mean cross-entropy against ``labels`` (N, H, W) of at
    most :data:`LOSS_BLOWN_UP`. The net is run as training runs it (BatchNorm on the batch's
    statistics: early running averages would make a healthy net look blown up), then its
    buffers and the random generators are put back, so resuming stays exact.
    """
    bad = non_finite_tensor(net.state_dict())
    if bad is not None:
        return f"tensor {bad} holds NaN or inf values"
    saved = {name: buffer.clone() for name, buffer in net.named_buffers()}
    devices = [images.device] if images.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):  # dropout's draws leave no trace
            scores = net(images).float()  # (N, K, H, W)
    finally:
        for name, buffer in net.named_buffers():  # BatchNorm's running statistics
            buffer.copy_(saved[name])
    if not bool(torch.isfinite(scores).all()):
        largest = max(p.abs().max().item() for p in net.parameters() if p.numel())
        return f"its weights (up to {largest:.3g}) score the last batch with NaN or inf"
    value = F.cross_entropy(scores, labels, ignore_index=ignore_index, reduction="sum").item()
    value /= max(1, int((labels != ignore_index).sum()))
    if not math.isfinite(value) or value > LOSS_BLOWN_UP:
        return (
            f"its cross-entropy on the last batch is {value:.3g} per pixel (blown up: over "
            f"{LOSS_BLOWN_UP:g})"
        )
    return None


# --------------------------------------------------------------------------- Ctrl-C


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after ``last.pt`` was written at the step it stopped at; the
    message says how to resume. A ``KeyboardInterrupt``, so callers that stop on one still do."""

    def __init__(self, iteration: int, checkpoint: Path, folder: Path) -> None:
        super().__init__(
            f"interrupted at iteration {iteration}; wrote {checkpoint}; continue with: "
            f"fcnseg train --out {folder} --resume"
        )
        self.iteration = iteration
        self.checkpoint = checkpoint


class DeferredInterrupt:
    """While active, the first SIGINT sets :attr:`requested` instead of raising; a second one
    raises ``KeyboardInterrupt`` at once. Only in the main thread (elsewhere a no-op)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._active = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("Ctrl-C: stopping after this step (press again to stop at once)")

    def start(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._active = True
        return self

    def stop(self) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            self._active = False

    def __enter__(self) -> DeferredInterrupt:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ignore_sigint_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a terminal's Ctrl-C reaches the workers too; they leave
    it to the main process, which stops at the end of its step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
