"""atheris fuzz target for the document parsers: any input must either parse or raise ParseError (a clear,
classified failure); anything else is a bug. Run by tests/fuzz/test_fuzz.py (slow suite) for a fixed budget:

    python tests/fuzz/fuzz_parsers.py -max_total_time=120 -timeout=20 -rss_limit_mb=3072 CORPUS_DIR
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from index.errors import ParseError
    from ingest.parsers import parse

SUFFIXES = [".pdf", ".html", ".md", ".txt", ".docx", ".csv", ".json", ".xlsx"]


def one_input(data: bytes) -> None:
    if not data:
        return
    suffix = SUFFIXES[data[0] % len(SUFFIXES)]
    with contextlib.suppress(ParseError):
        parse(Path(f"fuzzed{suffix}"), data[1:])


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
