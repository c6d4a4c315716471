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
