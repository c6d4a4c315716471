"""The report of one ingestion run: what happened to each file, in numbers and reasons."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import PurePath


@dataclass
class FileFailure:
    path: str
    reason: str


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    relabelled: int = 0  # unchanged documents given a new access list
    chunks_written: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    tokens_embedded: int = 0
    seconds: float = 0.0
    generation: int = 0
    failures: list[FileFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files in the folders of types Quelle does not read
    supported: list[str] = field(default_factory=list)  # the types it reads (set when files were skipped)

    SHOWN = 50  # skipped files named in the text summary (the JSON report names all)

    def skip(self, paths: list[str]) -> None:
        from ingest.parsers import PARSERS

        self.skipped += paths
        if self.skipped:
            self.supported = sorted(PARSERS)

    def fail(self, path: str, reason: str) -> None:
        self.failed += 1
        self.failures.append(FileFailure(path, reason))

    @property
    def finished(self) -> int:
        """Files done with: written (added, updated), unchanged or failed."""
        return self.added + self.updated + self.unchanged + self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    def save(self, path: PurePath, *, paths: list[str], finished: str) -> None:
        """Write the report (with what was ingested, when, and its text summary) to `path`, whole or not at
        all: a reader never sees half a report."""
        import os
        import tempfile

        body = {"finished": finished, "paths": paths, "summary": self.summary(), **asdict(self)}
        folder = os.path.dirname(str(path)) or "."
        os.makedirs(folder, exist_ok=True)  # with the index elsewhere (PostgreSQL) the data dir may be new
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".last-ingest-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f, ensure_ascii=False, indent=2)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def summary(self) -> str:
        lines = [
            f"files: {self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.removed} removed, {self.failed} failed"
            + (f"; {self.relabelled} unchanged given a new access list" if self.relabelled else ""),
            f"chunks: {self.chunks_written} written ({self.chunks_embedded} embedded, "
            f"{self.chunks_reused} reused) in {self.seconds:.1f} s; generation {self.generation}",
        ]
        if self.skipped:
            kinds = Counter(PurePath(p).suffix.lower() or "(none)" for p in self.skipped)
            lines.append(f"skipped: {len(self.skipped)} file(s) of types not read: "
                         + ", ".join(f"{k} {n}" for k, n in kinds.most_common())
                         + f" (supported: {' '.join(self.supported)})")
            lines += [f"skipped: {p}" for p in self.skipped[:self.SHOWN]]
            if len(self.skipped) > self.SHOWN:
                lines.append(f"skipped: ... and {len(self.skipped) - self.SHOWN} more (--json lists all)")
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"failed: {f.path}: {f.reason}" for f in self.failures]
        return "\n".join(lines)
