"""schemathesis against the live OpenAPI schema of `quelle serve` (a real subprocess on 127.0.0.1), every
check on (server errors, schema conformance of responses and SSE events, status codes and headers documented,
schema-valid requests accepted and invalid ones refused, stateful links): 0 failures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.auth import KeyStore
from tests.conftest import ROOT
from tests.service.test_e2e import free_port, serve

pytestmark = pytest.mark.integration


def test_schemathesis_finds_nothing(built_index, tmp_path):
    st = Path(sys.executable).parent / "st"
    if not st.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    data_dir = tmp_path / "index"
    shutil.copytree(built_index, data_dir)
    keys = KeyStore(data_dir / "keys.sqlite")
    key, _ = keys.create("schemathesis", ("admin",))  # an administrator reaches every operation
    keys.close()
    port = free_port()
    with serve(data_dir, port, tmp_path, QUELLE_RATE_LIMIT="0"):
        run = subprocess.run(
            [str(st), "--config-file", str(ROOT / "tests" / "service" / "schemathesis.toml"), "run",
             f"http://127.0.0.1:{port}/openapi.json", "--checks", "all", "-H", f"Authorization: Bearer {key}",
             "--max-examples", os.environ.get("QUELLE_SCHEMATHESIS_EXAMPLES", "25"), "-w", "1", "--seed", "7",
             "--generation-database", "none"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    summary = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert run.returncode == 0 and summary, run.stdout[-6000:]
    generated, passed = map(int, summary.groups())
    assert generated == passed >= 300, summary.group(0)
    print(summary.group(0))
