"""Shared helpers for the benchmark scripts: memory, table printing, JSON output (timing:
``speed_rows.median_seconds``)."""

from __future__ import annotations

import ctypes
import json
import platform
import resource
from collections.abc import Sequence
from pathlib import Path

import torch


def steady_malloc(size: int = 256 * 2**20) -> bool:
    """Keep freed blocks up to ``size`` bytes in glibc's heap instead of returning them to the
    OS (``mallopt`` M_MMAP_THRESHOLD / M_TRIM_THRESHOLD), so that timings of code that makes
    megabyte temporaries (numpy's ``bincount`` path) measure the work, not page faults on
    fresh memory. Returns False where glibc's ``mallopt`` is not available."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, size)) and bool(libc.mallopt(m_trim_threshold, size))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def print_table(rows: Sequence[dict], columns: Sequence[str]) -> None:
    """A plain-text table of ``rows`` (dicts) with the given columns."""
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_json(path: str | Path, name: str, rows: list[dict], **extra: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **extra, "rows": rows}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
