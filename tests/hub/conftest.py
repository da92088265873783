import sys
from pathlib import Path

import pytest
from hubfixtures import FileServer

# The tiny dataset layouts of tests/data (datafixtures.py) are packed into publisher archives.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from fcnseg.hub import download


@pytest.fixture
def server():
    """A local HTTP server on 127.0.0.1, stopped after the test."""
    files = FileServer()
    yield files
    files.close()


@pytest.fixture
def hub_env(tmp_path, monkeypatch, server):
    """A private cache, every download through the local server, retries without pauses."""
    monkeypatch.setenv("FCNSEG_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("FCNSEG_MIRROR", server.url)
    monkeypatch.delenv("FCNSEG_OFFLINE", raising=False)
    monkeypatch.setattr(download, "BACKOFF_S", 0.0)
    return tmp_path / "cache"
