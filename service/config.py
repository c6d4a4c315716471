"""Settings, read from the environment (prefix QUELLE_) and an optional .env file.

Only the CLI and the service's create_app() build a Settings; library functions take typed arguments.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.embedder import BUNDLED_MINILM


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUELLE_", env_file=".env", extra="ignore")

    data_dir: Path = Path("quelle-data")
    embedding_model: str = BUNDLED_MINILM
    query_prefix: str = ""
    passage_prefix: str = ""
    embed_batch_size: int = Field(32, ge=1, le=4096)
    embed_threads: int | None = Field(None, ge=1)
    chunk_tokens: int = Field(250, ge=16)
    chunk_overlap: int = Field(40, ge=0)
    commit_interval: float = Field(30.0, ge=0)
    log_level: str = "WARNING"
