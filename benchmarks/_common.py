"""Helpers shared by the benchmarks: timing, memory and the data folder."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEED_ENV = "COVIDXRAY_SEED_DATA"


def data_root(default_synthetic: int = 400) -> tuple[Path, str]:
    """seed-xray from COVIDXRAY_SEED_DATA, or a synthetic set (named as such)."""
    value = os.environ.get(SEED_ENV)
    if value and Path(value).is_dir():
        return Path(value), f"seed-xray ({value})"
    from covidxray.datasets import make_synthetic

    root = make_synthetic(
        tempfile.mkdtemp(),
        n_per_class=default_synthetic // 2,
        test_per_class=50,
        image_size=(320, 390),
    )
    return root, "SYNTHETIC demo set (set COVIDXRAY_SEED_DATA for seed-xray)"


def warm_file_cache(folder: Path) -> int:
    """Read every file once, so that neither side pays for a cold disk cache."""
    return sum(len(p.read_bytes()) for p in folder.rglob("*") if p.is_file())


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def count_images(dataset: Any) -> int:
    return sum(int(x.shape[0]) for x, _ in dataset)


def table(header: tuple[str, str], rows: list[tuple[str, float, float, float]]) -> str:
    """Rows of (label, covidxray, baseline, ratio) as an aligned text table."""
    lines = [f"{'':28}{'covidxray':>12}{header[1]:>12}{'ratio':>8}"]
    for label, ours, base, ratio in rows:
        lines.append(f"{label:28}{ours:12.1f}{base:12.1f}{ratio:8.2f}")
    return "\n".join(lines)
