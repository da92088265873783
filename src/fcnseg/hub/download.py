"""Fetching one file into place: cache folder, mirror, offline mode, resume, retries, checksum.

A download goes to ``<dest>.part`` and is renamed to ``dest`` only after its checksum matches,
so ``dest`` is either absent or whole. An interrupted transfer leaves the ``.part`` file, and
the next attempt asks the server for the rest (HTTP ``Range``); a server that ignores the range
sends the whole file again. Transient failures (a dropped connection, a timeout, HTTP 5xx or
429) are retried a few times with a growing pause, each retry resuming where the last stopped.

Environment:

- ``FCNSEG_HOME``: the cache folder (default ``$XDG_CACHE_HOME/fcnseg``, else
  ``~/.cache/fcnseg``).
- ``FCNSEG_MIRROR=URL``: replaces the scheme and host of every download, keeping the path, for
  users behind a proxy or with an internal mirror (as ``HF_ENDPOINT`` does for the Hugging Face
  hub), and for tests against a local server.
- ``FCNSEG_OFFLINE=1``: no network; a missing file is an error that names the URL and the exact
  path where a copy fetched by other means can be placed.

torch.hub's ``download_url_to_file`` checks hashes and shows a bar but cannot resume, hence
this module; it keeps torch.hub's convention for hash prefixes in file names.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fcnseg.errors import EXIT_DISK_FULL, FcnsegError

try:
    import fcntl
except ImportError:  # Windows: no lock; concurrent fetches of one file are the user's to avoid
    fcntl = None

logger = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes read per step
RETRIES = 3  # further attempts after a transient failure
BACKOFF_S = 1.0  # pause before the first retry; doubled after each
TIMEOUT_S = 60.0  # socket timeout per connection and read
SPACE_MARGIN = 64 << 20  # free bytes to leave beyond what a download needs
USER_AGENT = "fcnseg (+https://github.com/fcnseg)"


class HubError(FcnsegError):
    """A weight file or dataset that cannot be fetched, verified or unpacked."""


class DownloadError(HubError):
    """The network failed, or is off; the message names the URL and where the file belongs."""


class ChecksumError(HubError):
    """A download whose checksum differs from the published one (the file is deleted)."""


class DiskSpaceError(HubError):
    """Too little free space for a download; the message names the folder and both sizes."""

    exit_status = EXIT_DISK_FULL


@dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algorithm`` ("sha256" or "md5"), ``hexdigest`` (a full digest, or a
    prefix of one, as in torchvision's file names) and ``source`` (who published it)."""

    algorithm: str
    hexdigest: str
    source: str

    def matches(self, digest: str) -> bool:
        return bool(self.hexdigest) and digest.startswith(self.hexdigest.lower())

    def describe(self) -> str:
        kind = "prefix" if len(self.hexdigest) < {"sha256": 64, "md5": 32}[self.algorithm] else ""
        return f"{self.algorithm} {kind + ' ' if kind else ''}{self.hexdigest} ({self.source})"


def cache_dir() -> Path:
    """``$FCNSEG_HOME``, else ``$XDG_CACHE_HOME/fcnseg``, else ``~/.cache/fcnseg``."""
    home = os.environ.get("FCNSEG_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "fcnseg"


def offline() -> bool:
    """True when ``FCNSEG_OFFLINE`` is set to anything but "", "0", "false" or "no"."""
    return os.environ.get("FCNSEG_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def mirrored(url: str) -> str:
    """``url`` with its scheme and host replaced by ``$FCNSEG_MIRROR``'s (the path kept).

    A mirror with a path prefix (``https://mirror.example/fcnseg``) puts it before the path.
    """
    mirror = os.environ.get("FCNSEG_MIRROR", "").strip()
    if not mirror:
        return url
    base = urllib.parse.urlsplit(mirror)
    if not base.scheme or not base.netloc:
        raise DownloadError(f"FCNSEG_MIRROR={mirror!r} is not a URL like https://host[/prefix]")
    parts = urllib.parse.urlsplit(url)
    path = base.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_sha256(dest: Path) -> str | None:
    """The SHA-256 recorded beside an unverified file at its first download, if any."""
    record = dest.with_name(dest.name + ".sha256")
    if not record.is_file():
        return None
    return record.read_text().split()[0] if record.read_text().strip() else None


def check_space(folder: Path, needed: int, url: str) -> None:
    """Raise :class:`DiskSpaceError` unless ``folder`` has ``needed`` bytes (plus a margin) free."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + SPACE_MARGIN:
        raise DiskSpaceError(
            f"not enough space in {folder} for {url}: needs {needed / 1e6:.0f} MB "
            f"(+{SPACE_MARGIN / 1e6:.0f} MB margin), {free / 1e6:.0f} MB free; "
            "free some space or set FCNSEG_HOME (or --root) to a larger disk"
        )


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for ``path`` (POSIX ``flock`` on a file in the cache's
    ``locks/``, named by the path's hash): processes fetching the same file (the ranks of a
    distributed run) wait for the first instead of writing over it."""
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    lock = cache_dir() / "locks" / f"{path.name}-{key}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _Transient(Exception):
    """A failure worth retrying: the connection dropped, timed out, or the server is busy."""


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to send: the .part file is whole
            error.close()
            raise
        if error.code >= 500 or error.code == 429:
            raise _Transient(f"HTTP {error.code} {error.reason}") from error
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise _Transient(f"{type(reason).__name__}: {reason}") from error


def _transfer(url: str, part: Path, size_hint: int | None, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (created if absent), resuming at its length."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset)
    except urllib.error.HTTPError:  # 416 at an offset: the file is already complete
        return
    with response:
        if offset and response.status != 206:  # the server ignored the range: start over
            logger.info("%s: server does not resume; downloading from the start", url)
            offset = 0
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        if remaining is not None or size_hint is not None:
            check_space(part.parent, remaining if remaining is not None else size_hint, url)
        total = offset + remaining if remaining is not None else size_hint
        mode = "ab" if offset else "wb"
        received = 0
        with (
            open(part, mode) as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=Path(urllib.parse.urlsplit(url).path).name,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    block = response.read(CHUNK)
                except (http.client.IncompleteRead, ConnectionError, TimeoutError) as error:
                    raise _Transient(f"transfer cut: {type(error).__name__}") from error
                if not block:
                    break
                handle.write(block)
                received += len(block)
                bar.update(len(block))
        if remaining is not None and received < remaining:
            raise _Transient(f"transfer cut after {offset + received} of {total} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    checksum: Checksum | None = None,
    size: int | None = None,
    progress: bool = True,
    retries: int | None = None,
    backoff: float | None = None,
) -> Path:
    """Fetch ``url`` (through ``$FCNSEG_MIRROR``) to ``dest``; return ``dest``.

    An existing ``dest`` is returned as it is (it was verified when it was written).
    ``checksum``: the published digest; a mismatch deletes the download and raises
    :class:`ChecksumError`. Without one, the SHA-256 of the first download is recorded in
    ``<dest>.sha256`` and later downloads (after the file was deleted) must match it.
    ``size``: the expected bytes, to check free space before connecting. ``retries`` and
    ``backoff`` (seconds before the first retry, doubled after each) default to
    :data:`RETRIES` and :data:`BACKOFF_S`.
    """
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF_S if backoff is None else backoff
    dest = Path(dest)
    if dest.is_file():
        return dest
    source = mirrored(url)
    if offline():
        raise DownloadError(
            f"offline (FCNSEG_OFFLINE is set): cannot fetch {source}; "
            f"fetch it by other means and place it at {dest}"
        )
    with locked(dest):
        if dest.is_file():  # another process fetched it while this one waited
            return dest
        return _download(source, dest, checksum, size, progress, retries, backoff)


def _download(
    source: str,
    dest: Path,
    checksum: Checksum | None,
    size: int | None,
    progress: bool,
    retries: int,
    backoff: float,
) -> Path:
    part = dest.with_name(dest.name + ".part")
    recorded = recorded_sha256(dest)
    first_copy = checksum is None and not recorded
    if checksum is None and recorded:  # fetched before, unpublished: hold it to the first copy
        checksum = Checksum("sha256", recorded, "recorded at the first download")
    if size is not None:
        have = part.stat().st_size if part.exists() else 0
        check_space(dest.parent, max(size - have, 0), source)
    logger.info("downloading %s to %s", source, dest)
    for attempt in range(retries + 1):
        try:
            _transfer(source, part, size, progress)
            break
        except _Transient as error:
            if attempt == retries:
                raise DownloadError(
                    f"cannot fetch {source} ({error}) after {retries + 1} attempts; "
                    f"fetch it by other means and place it at {dest}"
                ) from error
            pause = backoff * 2**attempt
            logger.warning("%s: %s; retrying in %.1f s (resuming)", source, error, pause)
            time.sleep(pause)
    sha256 = file_digest(part, "sha256")
    if checksum is not None:
        actual = sha256 if checksum.algorithm == "sha256" else file_digest(part, checksum.algorithm)
        if not checksum.matches(actual):
            part.unlink()
            raise ChecksumError(
                f"{source}: {checksum.algorithm} {actual} does not match the expected "
                f"{checksum.describe()}; the download was deleted (a changed or corrupt file: "
                "retry, or report it if it persists)"
            )
    if first_copy:
        dest.with_name(dest.name + ".sha256").write_text(f"{sha256}  {dest.name}\n")
        logger.warning(
            "%s has no published checksum; recorded its SHA-256 %s on first download",
            dest.name,
            sha256,
        )
    os.replace(part, dest)
    return dest
