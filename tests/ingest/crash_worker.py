"""Ingest a folder, committing after every small batch, for the crash tests to kill at random moments.

    python -m tests.ingest.crash_worker CORPUS DATA_DIR

Prints "ready" once imports are done, so the killer's clock starts when ingestion does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from index.embedded import FaissSqliteStore
from ingest.chunking import Chunker, ChunkingConfig
from ingest.pipeline import Ingestor
from tests.fakes import HashEmbedder


def main() -> int:
    corpus, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
    emb = HashEmbedder()
    print("ready", flush=True)
    with FaissSqliteStore(data_dir, model_id=emb.model_id, dim=emb.dim, writable=True) as store:
        report = Ingestor(store, emb, Chunker(emb.tokenizer, ChunkingConfig(48, 8)), embed_batch=16,
                          commit_interval=0.0).run([corpus], sync=True)
    print("done", report.added, report.updated, report.unchanged, report.removed, report.failed, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
