"""Small helpers that make a file change survive a crash: write aside, fsync, rename, fsync the folder."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fsync_path(path)


def publish(tmp: Path, final: Path) -> None:
    """Atomically put a fully written `tmp` file in place of `final`."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)
