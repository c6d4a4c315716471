"""The notebooks run top to bottom, offline, on small real data, so they never rot; git holds them without
outputs."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import DATA, ROOT, SAMPLES

NOTEBOOKS = ROOT / "notebooks"


def execute(name: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    """Run a notebook in a real kernel with `env` set; return all its text output."""
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("QUELLE_EMBEDDING_MODEL", "all-MiniLM-L6-v2")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(text)


def test_committed_notebooks_have_no_outputs():
    books = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {b.name for b in books} >= {"retrieval_quality.ipynb", "index_explorer.ipynb"}
    for book in books:
        nb = nbformat.read(book, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{book.name} holds outputs"


def test_retrieval_quality_notebook(tmp_path, monkeypatch):
    sets = tmp_path / "sets"
    shutil.copytree(DATA / "beir-mini", sets / "beir-mini")
    out = execute("retrieval_quality.ipynb", monkeypatch,
                  {"QUELLE_NB_SETS": str(sets), "QUELLE_NB_WORKDIR": str(tmp_path / "work")})
    assert "beir-mini: 9 queries" in out
    for mode in ("dense", "keyword", "hybrid"):
        assert f"\n{mode:16}" in "\n" + out
    assert "queries miss their passage in the top 5" in out
    assert "configured policy AbstainPolicy(" in out


def test_index_explorer_notebook(tmp_path, monkeypatch):
    from tests.cli.test_cli import quelle

    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES, docs)
    shutil.copy(DATA / "scanned-page.pdf", docs / "scanned-page.pdf")  # page 2 is an image
    data_dir = tmp_path / "index"
    got = quelle("ingest", str(docs), "--data-dir", str(data_dir))
    assert got.returncode == 0, got.stderr
    out = execute("index_explorer.ipynb", monkeypatch, {"QUELLE_DATA_DIR": str(data_dir)})
    n_docs = len([p for p in docs.rglob("*") if p.is_file()])
    assert f": {n_docs} documents," in out
    assert "1 pages without usable text" in out and "scanned-page.pdf page 2: " in out
    assert "chunks from" in out and "documents projected" in out


def test_index_explorer_notebook_on_postgresql(tmp_path, monkeypatch, pg_server):
    """The same notebook, unchanged, on an index kept in PostgreSQL (only QUELLE_PG_DSN differs)."""
    from tests.cli.test_cli import quelle

    pg = {"QUELLE_PG_DSN": pg_server, "QUELLE_PG_SCHEMA": "notebook"}
    got = quelle("ingest", str(SAMPLES), "--data-dir", str(tmp_path / "data"), env_extra=pg)
    assert got.returncode == 0, got.stderr
    out = execute("index_explorer.ipynb", monkeypatch, {"QUELLE_DATA_DIR": str(tmp_path / "data"), **pg})
    assert "PostgreSQL" in out and ": 6 documents," in out and "documents projected" in out


def test_the_documented_command_runs_a_notebook_from_the_root_on_the_users_index(tmp_path):
    """README: `jupyter nbconvert --to html --execute notebooks/index_explorer.ipynb`, from the repository root,
    reads the index the user built (a path relative to the root, as `quelle` reads it; the notebook looked
    for it relative to notebooks/) and draws Japanese and Chinese titles with a CJK font (they were boxes)."""
    import os
    import subprocess
    import sys

    from tests.cli.test_cli import quelle

    data_dir = tmp_path / "index"
    minilm = {"QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2"}
    assert quelle("ingest", str(SAMPLES), "--data-dir", str(data_dir), env_extra=minilm).returncode == 0
    env = {**os.environ, **minilm, "QUELLE_DATA_DIR": os.path.relpath(data_dir, ROOT), "MPLBACKEND": "Agg",
           "JUPYTER_PLATFORM_DIRS": "1", "PYTHONWARNINGS": "always"}
    run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute",
                          "notebooks/index_explorer.ipynb", "--output-dir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    html = (tmp_path / "index_explorer.html").read_text(encoding="utf-8")
    assert f"{os.path.relpath(data_dir, ROOT)}: " in html and " documents, " in html
    assert "missing from font" not in html and "show as boxes" not in html
    assert "documents projected" in html
