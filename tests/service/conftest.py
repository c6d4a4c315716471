from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cli.indexer import FileIngestor
from ingest.chunking import ChunkingConfig
from service.app import create_app
from service.config import Settings
from tests.llm_server import ScriptedLLM


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
        settings = Settings(_env_file=None, data_dir=data_dir, **{"auth": "off", **overrides})
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
