"""Files from careless or hostile hands: output paths checked before work, images checked
before decoding, files written with the permissions the umask grants.

- :func:`check_output_file` and :func:`check_output_dir` raise :class:`OutputPathError` naming
  the flag and the path when it cannot be written (a folder where a file is wanted, a file
  where a folder is wanted, a parent that is a file, no permission), so a command fails at
  once instead of after its work.
- :data:`DEFAULT_MAX_PIXELS`: images with more pixels are refused from their header, before
  they are decoded (a 12 KB PNG can declare 10000 x 10000 pixels, 300 MB decoded and far more
  once scored). :func:`set_max_pixels` raises the limit (the CLI's ``--max-pixels``).
- :func:`exif_orientation` reads the EXIF orientation tag that cameras write instead of
  rotating the pixels; ``fcnseg predict`` applies it, the dataset readers name it when an
  image's size does not match its label.
- :func:`umask_mode`: the mode a new file gets under the process's umask (``0o644`` under the
  usual ``022``), for files written through a private temporary file (which is ``0o600``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from PIL import Image

from fcnseg.errors import OutputPathError

# 25 megapixels: more than a 24 MP camera's 6000 x 4000 frames; VOC, CamVid, SIFT Flow, NYUDv2
# and PASCAL-Context images are all under 0.5 MP. FCN-8s at width 1 needs about 2.6 KB of
# activations per pixel in float32, so 25 MP is already about 65 GB to score in one piece.
DEFAULT_MAX_PIXELS = 25_000_000
EXIF_ORIENTATION = 0x0112  # EXIF tag 274: 1 as stored, 2..8 mirrored and/or rotated
_ORIENTATIONS = {
    2: "mirrored left-right",
    3: "rotated 180 degrees",
    4: "mirrored top-bottom",
    5: "transposed",
    6: "rotated 90 degrees clockwise",
    7: "transversed",
    8: "rotated 90 degrees counter-clockwise",
}

_max_pixels = DEFAULT_MAX_PIXELS
_umask_lock = threading.Lock()


# --------------------------------------------------------------------------- output paths


def _check_creatable(path: Path, flag: str, shown: Path) -> None:
    """The nearest existing ancestor of ``path`` must be a folder we may write into."""
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{flag} {shown}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {shown}: no permission to write in {ancestor}")


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Raise :class:`OutputPathError` unless a file can be written at ``path``; returns it.

    ``flag`` names the argument in the message (``"--json"``). Missing parent folders are
    fine (they are made when written); nothing is created here.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag} {path}: the file exists and is not writable")
    _check_creatable(path.parent, flag, path)
    return path


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Raise :class:`OutputPathError` unless ``path`` is, or can be made, a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file; give a folder")
    _check_creatable(path, flag, path)
    return path


# --------------------------------------------------------------------------- images


def max_pixels() -> int:
    """The largest image (width x height) read without an error; see :func:`set_max_pixels`."""
    return _max_pixels


def set_max_pixels(limit: int) -> None:
    """Set the image pixel limit for this process (default :data:`DEFAULT_MAX_PIXELS`).

    PIL's own decompression-bomb limit is raised with it where needed, so that ours decides.
    """
    global _max_pixels
    if limit < 1:
        raise ValueError(f"the pixel limit must be >= 1, got {limit}")
    _max_pixels = int(limit)
    pil_limit = Image.MAX_IMAGE_PIXELS
    if pil_limit is not None and pil_limit < limit:
        Image.MAX_IMAGE_PIXELS = limit


def too_many_pixels(size: tuple[int, int], path: str | os.PathLike) -> str | None:
    """The message for an image of ``size`` (width, height) over the limit, else None."""
    width, height = size
    if width * height <= _max_pixels:
        return None
    return (
        f"{path} is {width} x {height} = {width * height:,} pixels, over the limit of "
        f"{_max_pixels:,} (a decompression bomb?); raise it with --max-pixels N if the image is "
        "genuine"
    )


def exif_orientation(image: Image.Image | str | os.PathLike) -> int:
    """The EXIF orientation tag of an image (1..8; 1 when absent or unreadable)."""
    try:
        if isinstance(image, Image.Image):
            value = image.getexif().get(EXIF_ORIENTATION, 1)
        else:
            with Image.open(image) as opened:
                value = opened.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def describe_orientation(value: int) -> str:
    """``"EXIF orientation 6 (rotated 90 degrees clockwise)"``; ``""`` for 1 (as stored)."""
    if value not in _ORIENTATIONS:
        return ""
    return f"EXIF orientation {value} ({_ORIENTATIONS[value]} when shown)"


# --------------------------------------------------------------------------- permissions


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process's umask: what ``open(path, "w")`` would give a new file."""
    with _umask_lock:  # os.umask can only be read by setting it
        current = os.umask(0o077)
        os.umask(current)
    return mode & ~current
