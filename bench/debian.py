"""Real documents from Debian documentation packages, fetched with `apt-get download` (nothing installed).

Used by the benchmarks and the real-world tests. Files are cached under $QUELLE_TEST_CACHE
(default ~/.cache/quelle-tests). Nothing fetched here is committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


class FetchError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("QUELLE_TEST_CACHE", Path.home() / ".cache" / "quelle-tests"))


def package_root(package: str) -> Path:
    """The unpacked tree of a Debian package (its files under usr/share/...), fetched once."""
    dest = cache_dir() / "debian" / package
    tree = dest / "x"
    if (dest / ".done").exists():
        return tree
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise FetchError("apt-get/dpkg-deb not available")
    dest.mkdir(parents=True, exist_ok=True)
    got = None
    for attempt in range(2):
        got = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True)
        if got.returncode == 0:
            break
        if attempt == 0 and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
    else:
        raise FetchError(f"apt-get download {package}: {got.stderr.strip()[-300:] if got else ''}")
    deb = next(dest.glob(f"{package}_*.deb"))
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    deb.unlink()
    (dest / ".done").write_text("ok")
    return tree


def find(package: str, name: str) -> Path:
    found = sorted(package_root(package).rglob(name))
    if not found:
        raise FetchError(f"{name} not in Debian package {package}")
    return found[0]
