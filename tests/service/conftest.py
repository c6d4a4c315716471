from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cli.indexer import FileIngestor
from index.faiss_store import FaissSqliteStore
from ingest.chunking import Chunker, ChunkingConfig
from ingest.pipeline import Ingestor
from service.app import create_app
from service.config import Settings
from tests.conftest import DATA, SAMPLES
from tests.llm_server import ScriptedLLM


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, embedder) -> Path:
    """A real index of the sample handbook and tests/data, built once with the real model."""
    root = tmp_path_factory.mktemp("corpus")
    docs = root / "docs"
    shutil.copytree(SAMPLES, docs / "handbook")
    shutil.copytree(DATA, docs / "data", ignore=shutil.ignore_patterns("*.py"))
    data_dir = root / "index"
    with FaissSqliteStore(data_dir, model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
        Ingestor(store, embedder, Chunker(embedder.tokenizer)).run([docs])
    return data_dir


@pytest.fixture
def data_dir(built_index, tmp_path) -> Path:
    """A private copy of the built index, free to change."""
    dest = tmp_path / "index"
    shutil.copytree(built_index, dest)
    return dest


@pytest.fixture
def make_client(data_dir, embedder):
    """make_client(**settings) -> a TestClient over create_app, lifespan running."""
    clients = []

    def make(**overrides) -> TestClient:
        settings = Settings(_env_file=None, data_dir=data_dir, **overrides)
        ingest = FileIngestor(data_dir, embedder, embedder.tokenizer, ChunkingConfig())
        client = TestClient(create_app(settings, embedder=embedder, ingest_file=ingest))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def llm():
    server = ScriptedLLM()
    yield server
    server.close()


@pytest.fixture
def llm_client(make_client, llm):
    """A client whose answers come from the scripted LLM over real HTTP."""
    return make_client(llm_base_url=llm.base_url, llm_model="scripted-model", llm_api_key="test-key",
                       llm_timeout=3, llm_max_retries=0)
