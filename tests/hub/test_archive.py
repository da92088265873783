"""Safe unpacking: hostile tar and zip archives are refused whole, with the member named."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from fcnseg.errors import FcnsegError
from fcnseg.hub.archive import ArchiveError, UnsafeArchiveError, extract


def make_tar(path, members, mode="w"):
    """``members``: (name, kind, payload) with kind file | symlink | hardlink | chr | fifo | dir."""
    with tarfile.open(path, mode) as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
                continue
            info.type = {
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
                "dir": tarfile.DIRTYPE,
            }[kind]
            info.linkname = payload or ""
            archive.addfile(info)
    return path


SAFE = [("data/a.txt", "file", b"a"), ("data/b.txt", "file", b"b")]


@pytest.mark.parametrize("mode, suffix", [("w", ".tar"), ("w:gz", ".tgz"), ("w:bz2", ".tar.bz2")])
def test_safe_tar_unpacks(tmp_path, mode, suffix):
    members = [*SAFE, ("data/sub", "dir", None), ("data/sub/link", "symlink", "../a.txt")]
    archive = make_tar(tmp_path / f"ok{suffix}", members, mode)
    names = extract(archive, tmp_path / "out")
    assert names == ["data/a.txt", "data/b.txt", "data/sub", "data/sub/link"]
    assert (tmp_path / "out/data/a.txt").read_bytes() == b"a"
    assert (tmp_path / "out/data/sub/link").read_bytes() == b"a"  # a link inside is fine


@pytest.mark.parametrize(
    "member, why",
    [
        (("../evil.txt", "file", b"x"), "outside the target folder"),
        (("data/../../evil.txt", "file", b"x"), "outside the target folder"),
        (("/etc/evil.txt", "file", b"x"), "outside the target folder"),
        (("data/link", "symlink", "../../etc/passwd"), "links to '../../etc/passwd'"),
        (("data/link", "symlink", "/etc/passwd"), "links to '/etc/passwd'"),
        (("data/hard", "hardlink", "../outside"), "links to '../outside'"),
        (("data/tty", "chr", None), "device file"),
        (("data/pipe", "fifo", None), "device file or FIFO"),
    ],
)
def test_hostile_tar_is_refused_whole(tmp_path, member, why):
    archive = make_tar(tmp_path / "bad.tar", [*SAFE, member])
    out = tmp_path / "root" / "out"
    with pytest.raises(UnsafeArchiveError) as caught:
        extract(archive, out)
    assert isinstance(caught.value, FcnsegError)
    assert repr(member[0]) in str(caught.value) and why in str(caught.value)
    assert "bad.tar" in str(caught.value)
    assert list(out.iterdir()) == []  # nothing written, not even the safe members
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "root" / "evil.txt").exists()


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


FILE = stat.S_IFREG | 0o644


def test_safe_zip_unpacks(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", [("d/a.txt", b"a", FILE), ("d/b.txt", b"b", FILE)])
    assert extract(archive, tmp_path / "out") == ["d/a.txt", "d/b.txt"]
    assert (tmp_path / "out/d/b.txt").read_bytes() == b"b"


@pytest.mark.parametrize(
    "member, why",
    [
        (("../evil.txt", b"x", FILE), "outside the target folder"),
        (("/abs/evil.txt", b"x", FILE), "outside the target folder"),
        (("d\\..\\..\\evil.txt", b"x", FILE), "outside the target folder"),
        (("C:/evil.txt", b"x", FILE), "outside the target folder"),
        (("d/link", b"../../secret", stat.S_IFLNK | 0o777), "links to '../../secret'"),
        (("d/dev", b"", stat.S_IFCHR | 0o600), "device file"),
    ],
)
def test_hostile_zip_is_refused_whole(tmp_path, member, why):
    archive = make_zip(tmp_path / "bad.zip", [("d/a.txt", b"a", FILE), member])
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as caught:
        extract(archive, out)
    assert repr(member[0]) in str(caught.value) and why in str(caught.value)
    assert list(out.iterdir()) == []


def test_not_an_archive(tmp_path):
    path = tmp_path / "notes.tar"
    path.write_bytes(b"plain text, not an archive" * 40)
    with pytest.raises(ArchiveError, match="notes.tar is not a readable tar or zip archive"):
        extract(path, tmp_path / "out")
