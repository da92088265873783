"""The one base class of the errors fcnseg reports to its user, and the exit statuses.

Every error that means "what you gave me is wrong" (a file, a flag, a setting) derives from
:class:`FcnsegError`: the dataset, recipe, checkpoint, Caffe, export and transplant errors, and
the few below. The command line turns these into one line and the class's
:attr:`~FcnsegError.exit_status`; anything else is a bug and keeps its traceback.
``FcnsegError`` is a ``ValueError``, so code that caught ``ValueError`` before still works;
the subclasses that stand for a missing file or a busy folder are also ``FileNotFoundError`` /
``FileExistsError``, and a full disk also an ``OSError`` with ``errno.ENOSPC``.

Exit statuses of the ``fcnseg`` command (:data:`EXIT_STATUSES`):

====  =====================================================================================
0     done
1     the work failed: training diverged (NaN or inf loss; the last good checkpoint is
      kept), or an export does not reproduce the model
2     bad input: a flag, recipe, dataset, checkpoint, model file or output path, named
3     no space left on the device; the file being written was removed, older ones are intact
130   interrupted (Ctrl-C / SIGINT); a training run saved a checkpoint to resume from
====  =====================================================================================
"""

from __future__ import annotations

import errno
import os

EXIT_OK = 0
EXIT_DIVERGED = EXIT_FAILED = 1  # the work itself failed
EXIT_BAD_INPUT = 2
EXIT_DISK_FULL = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

EXIT_STATUSES = {
    EXIT_OK: "done",
    EXIT_FAILED: "training diverged (last good checkpoint kept), or an export disagrees",
    EXIT_BAD_INPUT: "bad input: a flag, recipe, dataset, checkpoint, model or output path",
    EXIT_DISK_FULL: "no space left on the device (the partial file was removed)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); training saved a checkpoint to --resume from",
}


class FcnsegError(ValueError):
    """Bad input, named in the message: the file or argument and what is wrong with it."""

    exit_status: int = EXIT_BAD_INPUT


class InputNotFoundError(FcnsegError, FileNotFoundError):
    """A file or folder given as input does not exist (or is of the wrong kind)."""


class OutputPathError(FcnsegError):
    """An output path that cannot be written: a folder where a file is wanted, a file where a
    folder is wanted, a parent that is a file, or no write permission. Raised before work."""


class RunFolderError(FcnsegError, FileExistsError):
    """The output folder holds a finished run (resume it) or one still running (its lock file
    names the process)."""


class NonFiniteError(FcnsegError):
    """Weights or scores that are NaN or infinite; the message names the file or tensor."""


class DiskFullError(FcnsegError, OSError):
    """No space left on the device while writing a file (named); the partial file is removed."""

    exit_status = EXIT_DISK_FULL

    def __init__(self, path: str | os.PathLike, detail: str = "") -> None:
        message = f"no space left on device writing {path}" + (f" ({detail})" if detail else "")
        OSError.__init__(self, errno.ENOSPC, message, str(path))
        self.args = (message,)
        self.path = str(path)

    def __str__(self) -> str:
        return self.args[0]


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is the operating system's "no space left" (ENOSPC) or quota (EDQUOT)."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
