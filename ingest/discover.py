"""Finding the files to ingest: folders are walked recursively, hidden entries skipped, order stable."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ingest.parsers import supported


def ignored(name: str) -> bool:
    """Nobody's document: hidden entries, editors' backups (`notes.md~`), office suites' lock files (`~$a.docx`)."""
    return name.startswith((".", "~$")) or name.endswith("~")


def source_of(path: Path) -> str:
    """The id-bearing name of a file: its absolute path, symlinks resolved."""
    return path.resolve().as_posix()


def discover(paths: Iterable[Path], skipped: list[Path] | None = None) -> Iterator[Path]:
    """Supported files under each path; a file named explicitly is yielded whatever its type. Files of other
    types found in folders are added to `skipped` (`ignored` ones are not: they are nobody's documents)."""
    seen: set[str] = set()
    for root in paths:
        if root.is_file():
            candidates: Iterable[Path] = [root]
        else:
            candidates = _walk(root, skipped)
        for path in candidates:
            key = source_of(path)
            if key not in seen:
                seen.add(key)
                yield path


def _walk(root: Path, skipped: list[Path] | None) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if ignored(name):
                continue
            if supported(path):
                yield path
            elif skipped is not None:
                skipped.append(path)
