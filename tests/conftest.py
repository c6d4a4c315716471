from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
SAMPLES = ROOT / "samples" / "handbook"


@pytest.fixture(scope="session")
def embedder():
    """The real bundled all-MiniLM-L6-v2, loaded once."""
    from index.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def tokenizer(embedder):
    return embedder.tokenizer


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A private copy of tests/data, safe to change."""
    dest = tmp_path / "docs"
    shutil.copytree(DATA, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return dest


def _cache_dir() -> Path:
    return Path(os.environ.get("QUELLE_TEST_CACHE", Path.home() / ".cache" / "quelle-tests"))


def debian_doc(package: str, member: str) -> Path:
    """A file from a Debian package, fetched with `apt-get download` (no install) and cached.

    Skips where apt is missing, except in CI (CI=true), where the real-world files must be tested."""
    import subprocess

    dest = _cache_dir() / "debian" / package
    target = dest / member
    if target.exists():
        return target
    dest.mkdir(parents=True, exist_ok=True)

    def fail(why: str):
        if os.environ.get("CI"):
            pytest.fail(f"cannot fetch Debian package {package}: {why}")
        pytest.skip(f"cannot fetch Debian package {package}: {why}")

    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        fail("apt-get/dpkg-deb not available")
    for attempt in range(2):
        got = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True)
        if got.returncode == 0:
            break
        if attempt == 0 and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
    else:
        fail(got.stderr.strip()[-300:])
    deb = next(dest.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest / "x")], check=True)
    found = next((dest / "x").rglob(Path(member).name), None)
    if found is None:
        fail(f"{member} not in the package")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(found, target)
    return target


@pytest.fixture(scope="session")
def debian_pdf() -> Path:
    """Debian New Maintainers' Guide (maint-guide, GPL-2+): a real 63-page PDF not made by this project."""
    return debian_doc("maint-guide", "maint-guide.en.pdf")
