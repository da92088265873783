"""Fixtures: each dataset layout built afresh in ``tmp_path`` (see datafixtures.py)."""

from __future__ import annotations

from pathlib import Path

import datafixtures
import pytest


@pytest.fixture
def camvid_root(tmp_path: Path) -> Path:
    return datafixtures.build_camvid_root(tmp_path)


@pytest.fixture
def sbd_root(tmp_path: Path) -> Path:
    return datafixtures.build_sbd_root(tmp_path)


@pytest.fixture
def voc_devkit(tmp_path: Path) -> Path:
    return datafixtures.build_voc_devkit(tmp_path)


@pytest.fixture
def nyud_root(tmp_path: Path) -> Path:
    return datafixtures.build_nyud_root(tmp_path)


@pytest.fixture
def siftflow_root(tmp_path: Path) -> Path:
    return datafixtures.build_siftflow_root(tmp_path)


@pytest.fixture
def context_roots(tmp_path: Path) -> tuple[Path, Path]:
    return datafixtures.build_context_roots(tmp_path)


@pytest.fixture
def label_folder(tmp_path: Path) -> tuple[Path, Path, Path]:
    return datafixtures.build_label_folder(tmp_path)
