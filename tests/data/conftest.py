"""Fixtures: each dataset layout built afresh in ``tmp_path`` (see datafixtures.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import datafixtures
import pytest


def _built_by(build: Callable[[Path], Any]) -> Any:
    """A fixture returning ``build(tmp_path)``: the layout's root (or roots)."""

    @pytest.fixture
    def fixture(tmp_path: Path) -> Any:
        return build(tmp_path)

    return fixture


camvid_root = _built_by(datafixtures.build_camvid_root)
sbd_root = _built_by(datafixtures.build_sbd_root)
voc_devkit = _built_by(datafixtures.build_voc_devkit)
nyud_root = _built_by(datafixtures.build_nyud_root)
siftflow_root = _built_by(datafixtures.build_siftflow_root)
context_roots = _built_by(datafixtures.build_context_roots)
label_folder = _built_by(datafixtures.build_label_folder)
