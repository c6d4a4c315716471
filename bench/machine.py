"""The machine a bench ran on, for its printed figures (these machines differ: say which one)."""

from __future__ import annotations

import platform
from pathlib import Path

FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")  # what the encoders' kernels use


def cpu() -> str:
    """The CPU's model name, the cores this process may use and the vector features that decide the encoders'
    speed (bf16 units: avx512_bf16, amx_bf16)."""
    import os

    name, flags, family = platform.processor() or "unknown", set(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("cpu family") and not family:  # "AMD EPYC" names several generations
                family = f" (family {line.split(':', 1)[1].strip()})"
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    have = [f for f in FEATURES if f in flags]
    return f"{name}{family}, {cores} cores, {' '.join(have) or 'no AVX2/AVX-512'}"
