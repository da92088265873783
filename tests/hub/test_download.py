"""Downloads against a local server: cache folder, mirror, checksums, resume, retries, offline,
free space."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from fcnseg.errors import FcnsegError
from fcnseg.hub import download as dl
from fcnseg.hub.download import (
    Checksum,
    ChecksumError,
    DiskSpaceError,
    DownloadError,
    cache_dir,
    download,
    mirrored,
)

URL = "https://files.example.org/models/blob-{}.bin"
DATA = bytes(range(256)) * 4000  # 1 MB, several read chunks


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("FCNSEG_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "fcnseg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fcnseg"
    monkeypatch.setenv("FCNSEG_HOME", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_mirror_replaces_scheme_and_host_keeps_path(monkeypatch):
    url = "http://dl.caffe.berkeleyvision.org/fcn8s-heavy-pascal.caffemodel?x=1"
    monkeypatch.delenv("FCNSEG_MIRROR", raising=False)
    assert mirrored(url) == url
    monkeypatch.setenv("FCNSEG_MIRROR", "https://mirror.lan:8443/fcn/")
    assert mirrored(url) == "https://mirror.lan:8443/fcn/fcn8s-heavy-pascal.caffemodel?x=1"
    monkeypatch.setenv("FCNSEG_MIRROR", "mirror.lan")
    with pytest.raises(DownloadError, match="FCNSEG_MIRROR"):
        mirrored(url)


def test_download_verifies_and_renames(hub_env, server):
    url = URL.format("ok")
    digest = server.add(url, DATA)
    dest = hub_env / "weights" / "blob.bin"
    assert download(url, dest, Checksum("sha256", digest[:8], "test"), len(DATA), False) == dest
    assert dest.read_bytes() == DATA
    assert not dest.with_name("blob.bin.part").exists()
    assert not dest.with_name("blob.bin.sha256").exists()  # verified: nothing to record
    assert server.paths() == ["/models/blob-ok.bin"]  # through the mirror, path kept
    download(url, dest, Checksum("sha256", digest, "test"), progress=False)  # cached: no request
    assert len(server.requests) == 1


def test_md5_checksum(hub_env, server):
    url = URL.format("md5")
    server.add(url, DATA)
    md5 = hashlib.md5(DATA).hexdigest()
    dest = download(url, hub_env / "a.bin", Checksum("md5", md5, "publisher"), progress=False)
    assert dest.read_bytes() == DATA


def test_checksum_mismatch_deletes_the_file_and_says_so(hub_env, server):
    url = URL.format("bad")
    server.add(url, DATA)
    dest = hub_env / "bad.bin"
    wrong = Checksum("sha256", "0" * 64, "the publisher's page")
    with pytest.raises(ChecksumError) as caught:
        download(url, dest, wrong, progress=False)
    message = str(caught.value)
    assert isinstance(caught.value, FcnsegError)
    assert sha(DATA) in message and "0" * 64 in message and "deleted" in message
    assert "the publisher's page" in message and "/models/blob-bad.bin" in message
    assert not dest.exists() and not dest.with_name("bad.bin.part").exists()


def test_unverified_file_records_its_sha256(hub_env, server):
    url = URL.format("free")
    server.add(url, DATA)
    dest = download(url, hub_env / "free.bin", None, progress=False)
    assert dl.recorded_sha256(dest) == sha(DATA)
    assert dest.with_name("free.bin.sha256").read_text() == f"{sha(DATA)}  free.bin\n"


def test_cut_transfer_resumes_with_a_range_request(hub_env, server):
    url = URL.format("cut")
    server.add(url, DATA)
    server.state.cut["/models/blob-cut.bin"] = 300_000  # drop the connection once, mid-file
    dest = download(url, hub_env / "cut.bin", Checksum("sha256", sha(DATA), "t"), progress=False)
    assert dest.read_bytes() == DATA
    assert server.state.requests == [
        ("/models/blob-cut.bin", None),
        ("/models/blob-cut.bin", "bytes=300000-"),
    ]


def test_partial_file_from_an_earlier_run_is_resumed(hub_env, server):
    url = URL.format("part")
    server.add(url, DATA)
    dest = hub_env / "part.bin"
    dest.parent.mkdir(parents=True)
    dest.with_name("part.bin.part").write_bytes(DATA[:123_456])
    download(url, dest, Checksum("sha256", sha(DATA), "t"), progress=False)
    assert dest.read_bytes() == DATA
    assert server.state.requests == [("/models/blob-part.bin", "bytes=123456-")]


def test_server_without_ranges_restarts_from_zero(hub_env, server):
    url = URL.format("norange")
    server.add(url, DATA)
    server.state.ranges = False
    dest = hub_env / "n.bin"
    dest.parent.mkdir(parents=True)
    dest.with_name("n.bin.part").write_bytes(b"garbage")
    download(url, dest, Checksum("sha256", sha(DATA), "t"), progress=False)
    assert dest.read_bytes() == DATA


def test_transient_errors_are_retried_then_reported(hub_env, server):
    url = URL.format("busy")
    server.add(url, DATA)
    server.state.status["/models/blob-busy.bin"] = 503
    dest = hub_env / "busy.bin"
    with pytest.raises(DownloadError) as caught:
        download(url, dest, None, progress=False, retries=2)
    assert len(server.requests) == 3
    message = str(caught.value)
    assert "503" in message and f"place it at {dest}" in message and "\n" not in message


def test_missing_file_is_not_retried(hub_env, server):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(URL.format("gone"), hub_env / "gone.bin", None, progress=False)
    assert len(server.requests) == 1


def test_offline_names_the_url_and_the_exact_path(hub_env, server, monkeypatch):
    monkeypatch.setenv("FCNSEG_OFFLINE", "1")
    dest = hub_env / "weights" / "vgg16-397923af.pth"
    url = "https://download.pytorch.org/models/vgg16-397923af.pth"
    with pytest.raises(DownloadError) as caught:
        download(url, dest, None, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{server.url}/models/vgg16-397923af.pth" in message
    assert f"place it at {dest}" in message
    assert server.requests == []
    dest.parent.mkdir(parents=True)  # placed by hand: used as it is, offline
    dest.write_bytes(b"fetched elsewhere")
    assert download(url, dest, None, progress=False) == dest


def test_no_network_names_the_url_and_the_path(hub_env, monkeypatch):
    monkeypatch.setenv("FCNSEG_MIRROR", "http://127.0.0.1:9")  # nothing listens on port 9
    dest = hub_env / "x.bin"
    with pytest.raises(DownloadError) as caught:
        download(URL.format("x"), dest, None, progress=False, retries=1)
    assert "http://127.0.0.1:9/models/blob-x.bin" in str(caught.value)
    assert f"place it at {dest}" in str(caught.value)


def test_full_disk_is_refused_before_connecting(hub_env, server, monkeypatch):
    url = URL.format("big")
    server.add(url, DATA)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    dest = hub_env / "big.bin"
    with pytest.raises(DiskSpaceError) as caught:
        download(url, dest, None, size=5_000_000_000, progress=False)
    message = str(caught.value)
    assert str(dest.parent) in message and "5000 MB" in message and "0 MB free" in message
    assert server.requests == [] and not dest.exists()


def test_full_disk_found_from_content_length(hub_env, server, monkeypatch):
    url = URL.format("big2")
    server.add(url, DATA)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    monkeypatch.setattr(dl, "SPACE_MARGIN", 0)
    with pytest.raises(DiskSpaceError):
        download(url, hub_env / "big2.bin", None, progress=False)  # no size: server says 1 MB
    assert len(server.requests) == 1
    assert not Path(hub_env / "big2.bin").exists()


def test_later_downloads_must_match_the_first_recorded_one(hub_env, server):
    url = URL.format("tofu")
    server.add(url, DATA)
    dest = download(url, hub_env / "tofu.bin", None, progress=False)
    dest.unlink()  # deleted (or an archive unpacked and removed); the record stays
    server.add(url, DATA[::-1])  # the publisher's file changed
    with pytest.raises(ChecksumError, match="recorded at the first download"):
        download(url, dest, None, progress=False)
    assert not dest.exists() and dl.recorded_sha256(dest) == sha(DATA)
    server.add(url, DATA)
    assert download(url, dest, None, progress=False).read_bytes() == DATA


def test_concurrent_fetches_of_one_file_download_it_once(hub_env, server):
    url = URL.format("shared")
    server.add(url, DATA)
    dest = hub_env / "shared.bin"
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(download(url, dest, None, progress=False)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [dest] * 3 and dest.read_bytes() == DATA
    assert len(server.requests) == 1
