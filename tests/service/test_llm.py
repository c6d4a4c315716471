"""The generative path against a scripted OpenAI-compatible server on 127.0.0.1 (real HTTP, official client)."""

from __future__ import annotations

import re
import socket

from service.prompts import template
from tests.llm_server import Reply
from tests.service.test_ask import sse_events

Q = "What is the per diem outside Europe?"


def test_the_exact_messages_sent_and_a_checked_answer(llm_client, llm):
    llm.script("The per diem outside Europe is 80 EUR per day [1].")
    body = llm_client.post("/v1/ask", json={"question": Q, "top_k": 3}).json()
    assert len(llm.requests) == 1
    req = llm.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["authorization"] == "Bearer test-key"
    sent = req["body"]
    assert sent["model"] == "scripted-model" and sent["stream"] is True and sent["max_tokens"] == 512
    system, user = sent["messages"]
    assert system == {"role": "system",
                      "content": template("system.txt").format(not_found="I could not find this in the documents.")}
    assert user["role"] == "user"
    content = user["content"]
    assert content.startswith("Context:\n<context n=\"1\" title=\"Travel and Expenses Policy\" section=\"Per diem\">\n")
    assert content.count("<context n=") == 3 and content.endswith(f"\n\nQuestion: {Q}\n")
    assert "80 EUR per day elsewhere" in content
    assert body["answer"] == "The per diem outside Europe is 80 EUR per day [1]."
    assert body["grounded"] and [c["n"] for c in body["citations"]] == [1]
    assert "80 EUR per day elsewhere" in body["citations"][0]["quote"]


def test_markers_pointing_at_no_context_are_removed_and_unsupported_claims_removed(llm_client, llm):
    llm.script("The per diem is 80 EUR [1][7]. Employees also get a free pony every year [2].")
    body = llm_client.post("/v1/ask", json={"question": Q, "top_k": 2}).json()
    assert "[7]" not in body["answer"] and "80 EUR [1]" in body["answer"]
    assert "pony" not in body["answer"]  # in no document: removed, never shown as grounded
    assert body["unsupported"] == ["Employees also get a free pony every year."]
    assert body["grounded"] and [c["n"] for c in body["citations"]] == [1] and body["citations"][0]["supported"]


def test_an_uncited_sentence_is_cited_by_the_harness_to_the_block_that_supports_it(llm_client, llm):
    llm.script("The per diem outside Europe is 80 EUR per day.")
    body = llm_client.post("/v1/ask", json={"question": Q}).json()
    assert re.fullmatch(r"The per diem outside Europe is 80 EUR per day\. \[1\]", body["answer"])
    assert body["grounded"] and body["unsupported"] == []
    assert "80 EUR per day elsewhere" in body["citations"][0]["quote"]


def test_a_sentence_citing_the_wrong_block_takes_the_block_that_supports_it(llm_client, llm):
    llm.script("The per diem outside Europe is 80 EUR per day [2].")
    body = llm_client.post("/v1/ask", json={"question": Q, "top_k": 3}).json()
    cite = body["citations"][0]
    assert body["answer"].endswith("[1]") and len(body["citations"]) == 1
    assert cite["supported"] and "80 EUR per day elsewhere" in cite["quote"]


def test_when_nothing_generated_is_supported_the_passage_stands_in(llm_client, llm):
    llm.script("Every employee gets a free pony and a castle [1].")
    body = llm_client.post("/v1/ask", json={"question": Q}).json()
    assert "pony" not in body["answer"] and body["unsupported"] == ["Every employee gets a free pony and a castle."]
    assert "80 EUR" in body["answer"] and body["grounded"] and not body["abstained"]
    assert any("80 EUR" in q for c in body["citations"] for q in c["quotes"])


def test_a_generated_code_block_keeps_only_the_lines_a_block_holds(llm_client, llm):
    llm.script("The per diem outside Europe is 80 EUR per day [1].\n\n```\nrm -rf / --no-preserve-root\n```\n")
    body = llm_client.post("/v1/ask", json={"question": Q}).json()
    assert "```" not in body["answer"] and "rm -rf" not in body["answer"]
    assert body["unsupported"] == ["rm -rf / --no-preserve-root"]
    # one line copied from the document, one invented beside it: the block is not held whole, and only the
    # invented line goes (a small model padding a real command with one of its own)
    llm.script("```\nThe per diem is 60 EUR per day in Europe and 80 EUR per day elsewhere.\n"
               "sudo per-diem --grant 500 EUR\n```\n[1]")
    body = llm_client.post("/v1/ask", json={"question": Q}).json()
    assert "80 EUR per day elsewhere" in body["answer"] and "--grant" not in body["answer"], body["answer"]
    assert body["unsupported"] == ["sudo per-diem --grant 500 EUR"]
    assert body["answer"].startswith("```\n") and body["answer"].endswith("```\n[1]")


def test_the_stream_ends_with_the_checked_answer(llm_client, llm):
    llm.script(Reply(deltas=["The per diem is 80 EUR [1]. ", "A free pony ", "comes with it [1]."]))
    events = sse_events(llm_client.post("/v1/ask", json={"question": Q, "stream": True}).text)
    shown = "".join(d["text"] for e, d in events if e == "delta")
    final = next(d for e, d in events if e == "citations")
    assert "pony" in shown  # streamed as it came
    assert "pony" not in final["answer"] and final["unsupported"] == ["A free pony comes with it."]


def test_the_model_saying_not_found_is_an_abstention(llm_client, llm):
    llm.script("I could not find this in the documents.")
    body = llm_client.post("/v1/ask", json={"question": "How long is parental leave?"}).json()
    assert body["abstained"] and body["citations"] == []


def test_nothing_relevant_means_no_llm_call(llm_client, llm):
    body = llm_client.post("/v1/ask", json={"question": "Who won the football world cup in 2018?"}).json()
    assert body["abstained"] and body["answer"] == "I could not find this in the documents."
    assert llm.requests == []


def test_streaming_passes_deltas_and_strips_bad_markers_split_across_them(llm_client, llm):
    llm.script(Reply(deltas=["The per diem ", "is 80 EUR [", "1]", " and [", "9] done."]))
    r = llm_client.post("/v1/ask", json={"question": Q, "stream": True, "top_k": 3})
    events = sse_events(r.text)
    text = "".join(d["text"] for e, d in events if e == "delta")
    assert text == "The per diem is 80 EUR [1] and  done."
    assert events[-2][0] == "citations" and events[-2][1]["answer"] == "The per diem is 80 EUR [1] and done."
    assert events[-1][0] == "done"


def test_timeout_gives_503_with_the_reason_and_the_sources(llm_client, llm):
    llm.script(Reply(text="too late", sleep=5))
    r = llm_client.post("/v1/ask", json={"question": Q, "top_k": 2})
    assert r.status_code == 503 and r.headers["retry-after"]
    body = r.json()
    assert "timed out" in body["reason"] and len(body["sources"]) == 2
    assert body["sources"][0]["source"].endswith("travel-and-expenses.docx")


def test_unreachable_model_gives_503_and_stream_fails_before_starting(make_client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    client = make_client(llm_base_url=f"http://127.0.0.1:{port}/v1", llm_model="m", llm_timeout=2,
                         llm_max_retries=0)
    r = client.post("/v1/ask", json={"question": Q})
    assert r.status_code == 503 and "cannot reach the language model" in r.json()["reason"]
    assert r.json()["sources"]
    s = client.post("/v1/ask", json={"question": Q, "stream": True})
    assert s.status_code == 503


def test_http_errors_and_malformed_output_give_503(llm_client, llm, caplog):
    llm.script(Reply(status=500, text="boom: secret-internal-host:9000"), Reply(malformed=True), Reply(text=""))
    reasons = [llm_client.post("/v1/ask", json={"question": Q}).json()["reason"] for _ in range(3)]
    assert "HTTP 500" in reasons[0]
    assert "malformed" in reasons[1]
    assert "empty answer" in reasons[2]
    # the caller learns what failed, never where: no model address, no error body (both are in the log)
    assert not any("127.0.0.1" in r or "secret-internal-host" in r for r in reasons)
    assert "secret-internal-host" in caplog.text and llm.base_url in caplog.text


def test_retries_with_backoff_recover_from_a_transient_failure(make_client, llm):
    client = make_client(llm_base_url=llm.base_url, llm_model="m", llm_timeout=5, llm_max_retries=2)
    llm.script(Reply(status=503, text="busy"), "Per diem: 80 EUR outside Europe [1].")
    body = client.post("/v1/ask", json={"question": Q}).json()
    assert "80 EUR" in body["answer"] and len(llm.requests) == 2


def test_follow_ups_are_rewritten_by_the_llm_with_history(llm_client, llm):
    llm.script("The per diem within Europe is 60 EUR per day [1].")
    sid = llm_client.post("/v1/ask", json={"question": "What is the per diem within Europe?"}).json()["session_id"]
    llm.script("What is the per diem outside Europe?", "Outside Europe it is 80 EUR per day [1].")
    body = llm_client.post("/v1/ask", json={"question": "And elsewhere?", "session_id": sid}).json()
    rewrite, answer = llm.requests[1]["body"], llm.requests[2]["body"]
    assert "Q: What is the per diem within Europe?" in rewrite["messages"][1]["content"]
    assert "Last question: And elsewhere?" in rewrite["messages"][1]["content"]
    # the answer prompt carries the history as turns, and the standalone question
    roles = [m["role"] for m in answer["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert answer["messages"][1]["content"] == "What is the per diem within Europe?"
    assert answer["messages"][-1]["content"].endswith("Question: What is the per diem outside Europe?\n")
    assert "80 EUR" in body["answer"]


def test_metrics_count_llm_tokens(llm_client, llm):
    llm.script("Per diem outside Europe: 80 EUR [1].")
    llm_client.post("/v1/ask", json={"question": Q})
    text = llm_client.get("/metrics").text
    assert 'quelle_llm_tokens_total{kind="completion"}' in text and "quelle_llm_seconds_count 1.0" in text


def test_a_marker_only_answer_is_replaced_by_the_passage_of_its_block(llm_client, llm):
    """Qwen2.5-Coder-1.5B answered a third of the questions with a bare "[1]" (docs/quality.md): the model
    chose the block, the harness quotes its best passage rather than show an answer with no words."""
    llm.script("[1]")
    body = llm_client.post("/v1/ask", json={"question": Q, "top_k": 3}).json()
    assert "80 EUR per day elsewhere" in body["answer"] and not body["abstained"] and body["grounded"]
    assert [c["n"] for c in body["citations"]] == [1] and "80 EUR" in body["citations"][0]["quote"]
    assert re.search(r"\[1\]", body["answer"])


def _history_sent(llm) -> str:
    """Everything the last request to the model carried (history turns included)."""
    return "\n".join(m["content"] for m in llm.requests[-1]["body"]["messages"])


def test_not_found_then_document_text_is_an_answer_checked_and_stored_with_its_documents(llm_client, llm):
    """A model may append document text to the not-found sentence: that text is an answer (checked, cited,
    stored with the documents it came from), never an abstention that carries document text."""
    llm.script("I could not find this in the documents. The per diem outside Europe is 80 EUR per day [1].")
    body = llm_client.post("/v1/ask", json={"question": Q}).json()
    assert not body["abstained"] and "could not find" not in body["answer"]
    assert "80 EUR" in body["answer"] and body["citations"][0]["supported"] and body["grounded"]


def test_not_found_then_made_up_text_is_a_clean_abstention_in_memory(llm_client, llm):
    llm.script("I could not find this in the documents. Every employee gets a free pony [1].",
               "What about Europe?", "I could not find this in the documents.")
    first = llm_client.post("/v1/ask", json={"question": Q}).json()
    assert first["abstained"] and first["answer"] == "I could not find this in the documents."
    assert first["citations"] == [] and first["unsupported"] == ["Every employee gets a free pony."]
    llm_client.post("/v1/ask", json={"question": "And in Europe?", "session_id": first["session_id"]})
    rewrite = "\n".join(m["content"] for m in llm.requests[1]["body"]["messages"])
    assert "I could not find this in the documents." in rewrite and "pony" not in rewrite
    assert "pony" not in _history_sent(llm)
