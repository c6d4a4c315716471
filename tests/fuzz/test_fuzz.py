"""The parsers under atheris (coverage-guided fuzzing) for a fixed budget: every input must parse or raise
ParseError. Slow suite: QUELLE_FUZZ_SECONDS (default 120)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import DATA, ROOT

# as in fuzz_parsers.py: the first byte picks the parser
SUFFIXES = [".pdf", ".html", ".md", ".txt", ".docx", ".csv", ".json", ".xlsx"]


@pytest.mark.slow
def test_parsers_survive_fuzzing(tmp_path):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install atheris)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in DATA.iterdir():  # seeds: the real test documents
        if f.suffix in SUFFIXES and f.stat().st_size < 200_000:
            (corpus / f.name).write_bytes(bytes([SUFFIXES.index(f.suffix)]) + f.read_bytes())
    seconds = int(os.environ.get("QUELLE_FUZZ_SECONDS", "120"))
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fuzz" / "fuzz_parsers.py"), f"-max_total_time={seconds}",
         "-timeout=30", "-rss_limit_mb=3072", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=seconds + 300)
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("timeout-*")) + list(tmp_path.glob("oom-*"))
    # atheris prints the uncaught exception's traceback on stdout and libFuzzer's summary on stderr
    found = "\n".join(f"{c.name}: {c.read_bytes()[:300]!r}" for c in crashes)
    assert run.returncode == 0 and not crashes, f"{run.stdout[-4000:]}\n{run.stderr[-1500:]}\n{found}"

    runs = [line for line in run.stderr.splitlines() if line.startswith("Done ")]
    assert runs, run.stderr[-2000:]
    print(runs[-1])
