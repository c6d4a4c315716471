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
    from index.embedders.sbert import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """The model cache the product uses (exported ONNX models, shared by every data dir): tests reuse what a
    previous run exported, as a second start of the service does."""
    from service.config import Settings

    return Settings(_env_file=None).onnx_dir()


@pytest.fixture(scope="session")
def tokenizer(embedder):
    return embedder.tokenizer


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A private copy of tests/data, safe to change."""
    dest = tmp_path / "docs"
    shutil.copytree(DATA, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__", "beir-mini"))
    return dest



def debian_file(package: str, name: str) -> Path:
    """A file from a Debian package (bench/debian.py). Skips where apt is missing, except in CI (CI=true),
    where the real-world files must be tested."""
    from bench.debian import FetchError, find

    try:
        return find(package, name)
    except FetchError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def debian_pdf() -> Path:
    """Debian New Maintainers' Guide (package maint-guide): a real 63-page PDF not made by this project."""
    return debian_file("maint-guide", "maint-guide.en.pdf")


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, embedder) -> Path:
    """A real index of the sample handbook and tests/data, built once with the real model."""
    root = tmp_path_factory.mktemp("corpus")
    docs = root / "docs"
    shutil.copytree(SAMPLES, docs / "handbook")
    shutil.copytree(DATA, docs / "data", ignore=shutil.ignore_patterns("*.py", "beir-mini"))
    data_dir = root / "index"
    from index.embedded import FaissSqliteStore
    from ingest.chunking import Chunker
    from ingest.pipeline import Ingestor

    with FaissSqliteStore(data_dir, model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
        Ingestor(store, embedder, Chunker(embedder.tokenizer)).run([docs])
    return data_dir


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """The DSN of a real PostgreSQL with pgvector started for this test session (tests/pg.py); skipped when
    the postgres extra is not installed, unless QUELLE_REQUIRE_POSTGRES is set (.ci/run sets it)."""
    from tests import pg

    if not pg.available():
        if os.environ.get("QUELLE_REQUIRE_POSTGRES"):
            raise RuntimeError("QUELLE_REQUIRE_POSTGRES is set but the postgres extra is not installed "
                               "(pip install -e '.[postgres]')")
        pytest.skip("the postgres extra is not installed (pip install -e '.[postgres]')")
    with pg.server(tmp_path_factory.mktemp("postgres")) as dsn:
        yield dsn
