"""Where the harness keeps what it can rebuild: one cache root for builds, kernels and probes."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """~/.cache/ktrace-harness (or under $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ktrace-harness"
