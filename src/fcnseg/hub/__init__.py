"""Pretrained weights and datasets, one command each (the paper's transfer recipe, section 4).

- :mod:`fcnseg.hub.registry`: the known weight files (ImageNet backbones, the reference FCNs).
- :mod:`fcnseg.hub.weights`: :func:`apply_weights`, what ``fcnseg.fcn8s(weights=...,
  weights_backbone=...)`` calls; download, verify, convert once, fill.
- :mod:`fcnseg.hub.datasets`: :func:`fetch_dataset`, publisher archives into our readers' layouts.
- :mod:`fcnseg.hub.download` and :mod:`fcnseg.hub.archive`: the cache, mirror, offline mode,
  resume, retries, checksums and safe unpacking under both.
"""

from fcnseg.hub.archive import ArchiveError, UnsafeArchiveError, extract
from fcnseg.hub.datasets import DATASETS, DatasetDownloadError, DatasetEntry, fetch_dataset
from fcnseg.hub.download import (
    Checksum,
    ChecksumError,
    DiskSpaceError,
    DownloadError,
    HubError,
    cache_dir,
)
from fcnseg.hub.registry import WEIGHTS, UnknownWeightsError, WeightsEntry
from fcnseg.hub.weights import WeightsError, apply_weights, fetch_converted

__all__ = [
    "DATASETS",
    "WEIGHTS",
    "ArchiveError",
    "Checksum",
    "ChecksumError",
    "DatasetDownloadError",
    "DatasetEntry",
    "DiskSpaceError",
    "DownloadError",
    "HubError",
    "UnknownWeightsError",
    "UnsafeArchiveError",
    "WeightsEntry",
    "WeightsError",
    "apply_weights",
    "cache_dir",
    "extract",
    "fetch_converted",
    "fetch_dataset",
]
