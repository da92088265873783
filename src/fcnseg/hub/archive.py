"""Unpacking tar and zip archives without letting any member land outside the target folder.

Every member is checked before anything is written, so a hostile archive is refused whole,
with the offending member named: no absolute paths, no ``..`` components, no symbolic or hard
links whose target leaves the folder, no device files or FIFOs. Tar files are then extracted
with the standard library's ``data`` filter where this Python has it (3.12, and the security
releases of 3.10 and 3.11), which applies the same rules again; zip files get the same checks
by hand (``zipfile`` writes a symbolic link as a small text file, never as a link).
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from fcnseg.hub.download import HubError

logger = logging.getLogger(__name__)


class UnsafeArchiveError(HubError):
    """An archive with a member that would escape the target folder or is a device file."""


class ArchiveError(HubError):
    """A file that is not a readable tar or zip archive."""


def _inside(name: str) -> bool:
    """Whether a relative member path stays inside the folder (no absolute, no ``..``)."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return False
    return ".." not in PurePosixPath(name.replace("\\", "/")).parts


def _link_inside(member: str, target: str, hard: bool) -> bool:
    """Whether a link ``member -> target`` points inside the folder. A symbolic link's target
    is relative to the member's folder; a hard link's to the archive root."""
    if target.startswith(("/", "\\")):
        return False
    base = PurePosixPath() if hard else PurePosixPath(member).parent
    depth = 0
    for part in (base / target.replace("\\", "/")).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return False
    return True


def _check_member(name: str, label: str, device: bool, link: str | None, hard: bool) -> None:
    """Raise :class:`UnsafeArchiveError` for a member named ``name`` that lands outside the
    folder, is a ``device`` file or FIFO, or is a ``link`` (hard or symbolic) that points out."""
    if not _inside(name):
        raise UnsafeArchiveError(
            f"{label}: member {name!r} would be written outside the target folder; "
            "refused the whole archive"
        )
    if device:
        raise UnsafeArchiveError(
            f"{label}: member {name!r} is a device file or FIFO; refused the whole archive"
        )
    if link is not None and not _link_inside(name, link, hard):
        raise UnsafeArchiveError(
            f"{label}: member {name!r} links to {link!r}, outside the target folder; refused "
            "the whole archive"
        )


def check_tar(archive: tarfile.TarFile, label: str) -> list[tarfile.TarInfo]:
    """The members of a tar archive, or :class:`UnsafeArchiveError` naming the first bad one."""
    members = archive.getmembers()
    for member in members:
        device = member.ischr() or member.isblk() or member.isfifo() or member.isdev()
        link = member.linkname if member.issym() or member.islnk() else None
        _check_member(member.name, label, device, link, hard=member.islnk())
    return members


def check_zip(archive: zipfile.ZipFile, label: str) -> list[zipfile.ZipInfo]:
    """The members of a zip archive, or :class:`UnsafeArchiveError` naming the first bad one."""
    members = archive.infolist()
    for info in members:
        mode = info.external_attr >> 16  # the Unix mode, where the archiver recorded one
        device = stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)
        link = archive.read(info).decode("utf-8", "replace") if stat.S_ISLNK(mode) else None
        _check_member(info.filename, label, device, link, hard=False)
    return members


def extract(path: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """Unpack a tar (any compression) or zip archive into ``dest``; return the member names.

    Raises :class:`UnsafeArchiveError` (nothing written) for a hostile archive and
    :class:`ArchiveError` for one that cannot be read.
    """
    path, dest = Path(path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    label = path.name
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = check_zip(archive, label)
            archive.extractall(dest, members)
            return [m.filename for m in members]
    try:
        archive = tarfile.open(path)
    except (tarfile.TarError, EOFError) as error:
        raise ArchiveError(f"{path} is not a readable tar or zip archive: {error}") from error
    with archive:
        try:
            members = check_tar(archive, label)
        except (tarfile.TarError, EOFError) as error:
            raise ArchiveError(f"{path} is a damaged tar archive: {error}") from error
        if hasattr(tarfile, "data_filter"):
            try:
                archive.extractall(dest, members, filter="data")
            except tarfile.FilterError as error:  # the checks above should have caught it
                raise UnsafeArchiveError(f"{label}: {error}; refused") from error
        else:  # pragma: no cover - Pythons without PEP 706; members were checked above
            archive.extractall(dest, members)
    return [m.name for m in members]
