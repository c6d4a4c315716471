"""The machine a bench ran on, for its printed figures (these machines differ: say which one)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
