"""One spelling of devices and precisions, shared by recipes and the command line."""

from __future__ import annotations

import pytest
import torch

from fcnseg.errors import FcnsegError
from fcnseg.runtime import canonical_precision, precision_dtype, resolve_device
from fcnseg.train.recipe import Recipe, from_dict


def test_precision_names_and_the_old_spelling():
    cpu = torch.device("cpu")
    assert [precision_dtype(n, cpu) for n in ("fp32", "none", "bf16")] == [
        None,
        None,
        torch.bfloat16,
    ]
    assert canonical_precision("none") == "fp32"
    with pytest.raises(FcnsegError, match="fp16 needs a CUDA device, not cpu; use bf16"):
        precision_dtype("fp16", cpu)
    with pytest.raises(FcnsegError, match="unknown precision 'fp64'; use one of fp32, bf16"):
        canonical_precision("fp64")


def test_recipes_read_none_as_fp32():
    assert Recipe().amp == "fp32"
    assert Recipe(amp="none").amp == "fp32"
    assert from_dict({"amp": "none"}) == Recipe()
    assert Recipe().replace(amp="bf16").amp == "bf16"


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(FcnsegError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(FcnsegError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
