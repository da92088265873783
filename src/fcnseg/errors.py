"""The one base class of the errors fcnseg raises for bad input (a file, a flag, a setting).

Every error that means "what you gave me is wrong" derives from :class:`FcnsegError`: the
dataset, recipe, checkpoint, Caffe, export and download errors. The command line turns these
into one line and an exit status; anything else is a bug and keeps its traceback.
``FcnsegError`` is a ``ValueError``, so code that caught ``ValueError`` before still works.
"""

from __future__ import annotations


class FcnsegError(ValueError):
    """Bad input, named in the message: the file or argument and what is wrong with it."""
