"""Agent mode (service/agent/) end to end: the service over HTTP, a scripted OpenAI-compatible model over real HTTP
that speaks both step protocols, the real index, keys and access lists."""

from __future__ import annotations

import json

import pytest

from service.agent import DROPPED
from service.agent.calc import EXPRESSION, CalcError, calculate, show
from service.agent.protocols import PLAN_PROMPT
from tests.llm_server import Reply
from tests.service.test_ask import sse_events
from tests.service.test_permissions import make_world

Q = "What is the per diem outside Europe for a three-day trip?"
PER_DIEM = "80 EUR per day elsewhere"


def step(action: str, value: str = "", thought: str = "next") -> str:
    return json.dumps({"thought": thought, "action": action, "input": value})


@pytest.fixture
def agent_client(make_client, llm):
    """Agent mode without the planning reply (test_planning_... covers it), so each test scripts its steps."""
    return make_client(llm_base_url=llm.base_url, llm_model="scripted-model", llm_api_key="test-key",
                       llm_timeout=3, llm_max_retries=0, agent_plan=False)


def test_calculate_is_arithmetic_and_nothing_else():
    assert calculate("80 * 3") == 240 and calculate("(25 - 5) / 4") == 5 and show(calculate("0.1 + 0.2")) == "0.3"
    assert calculate("2 ** 10") == 1024 and calculate("-3 + 1,000") == 997 and calculate("7 // 2 + 7 % 2") == 4
    for bad, why in [("__import__('os').system('id')", "only numbers"), ("a + 1", "only numbers"),
                     ("2 ** 1000", "exponent"), ("10 ** 99 * 10 ** 99", "too large"), ("1 / 0", "division by zero"),
                     ("", "empty"), ("1 +", "not an arithmetic"), ("(-8) ** 0.5", "not a real number"),
                     ("1" * 201, "longer than")]:
        with pytest.raises(CalcError, match=why):
            calculate(bad)


def test_a_react_run_searches_calculates_and_answers_from_what_it_observed(agent_client, llm):
    llm.script(step("search", "per diem outside Europe", "find the per diem"),
               step("calculate", "80 * 3", "three days"),
               step("answer", "", "I have both"),
               "The per diem outside Europe is 80 EUR per day [1], so 240 EUR for three days.")
    r = agent_client.post("/v1/ask", json={"question": Q, "mode": "agent"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(s["tool"], s["input"]) for s in body["steps"]] == [("search", "per diem outside Europe"),
                                                                ("calculate", "80 * 3")]
    first, second = body["steps"]
    assert first["thought"] == "find the per diem" and PER_DIEM in first["observation"]
    assert first["blocks"] == list(range(1, len(first["blocks"]) + 1)) and len(first["blocks"]) == 5
    assert second["observation"] == "80 * 3 = 240" and second["blocks"] == []
    assert body["fallback"] is None and body["grounded"]
    assert body["answer"].startswith("The per diem outside Europe is 80 EUR per day [1]")
    assert PER_DIEM in body["citations"][0]["quote"]
    # the exact requests: a constrained step (the schema lists the enabled tools), the step and its
    # observation sent back, and the single-shot answer over the observed blocks with the tools' results
    sent = [q["body"] for q in llm.requests]
    assert len(sent) == 4 and [b["stream"] for b in sent] == [False, False, False, True]
    fmt = sent[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    options = fmt["json_schema"]["schema"]["anyOf"]
    assert [o["properties"]["action"]["const"] for o in options] == [
        "search", "read", "list_documents", "calculate", "today", "answer"]
    calc = next(o for o in options if o["properties"]["action"]["const"] == "calculate")
    assert calc["properties"]["input"]["pattern"] == EXPRESSION
    assert all(o["properties"]["thought"]["maxLength"] == 300 for o in options)
    assert sent[0]["max_tokens"] == 256
    system, question = sent[0]["messages"]
    assert system["role"] == "system" and "- calculate: " in system["content"]
    assert question == {"role": "user", "content": f"Question: {Q}"}
    assert sent[1]["messages"][2] == {"role": "assistant", "content": step(
        "search", "per diem outside Europe", "find the per diem")}
    assert sent[1]["messages"][3]["content"].startswith("Observation:\n[1] ") and PER_DIEM in sent[1]["messages"][3][
        "content"]
    final = sent[3]["messages"][-1]["content"]
    assert final.count("<context n=") == 5 and PER_DIEM in final
    assert "Results of tools (not from the documents):\ncalculate: 80 * 3 = 240" in final


def test_openai_tool_calling_sends_the_tools_and_their_results(make_client, llm):
    client = make_client(llm_base_url=llm.base_url, llm_model="scripted-model", llm_api_key="k", llm_timeout=3,
                         llm_max_retries=0, agent_protocol="tools", agent_plan=False)
    llm.script(Reply(text="Looking it up.", tool_calls=[("search", json.dumps({"query": "per diem outside Europe"}))]),
               Reply(text="Found it."),
               "The per diem outside Europe is 80 EUR per day [1].")
    body = client.post("/v1/ask", json={"question": Q, "mode": "agent", "tools": ["search", "calculate"]}).json()
    assert [(s["tool"], s["input"], s["thought"]) for s in body["steps"]] == [
        ("search", "per diem outside Europe", "Looking it up.")]
    assert body["fallback"] is None and body["grounded"] and PER_DIEM in body["citations"][0]["quote"]
    first, second, _ = [q["body"] for q in llm.requests]
    assert first["tool_choice"] == "auto" and "response_format" not in first
    assert [t["function"]["name"] for t in first["tools"]] == ["search", "calculate"]  # the request's choice
    assert first["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"query": {"type": "string", "minLength": 2, "maxLength": 200}},
        "required": ["query"], "additionalProperties": False}
    call, result = second["messages"][-2:]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"] == {
        "name": "search", "arguments": json.dumps({"query": "per diem outside Europe"})}
    assert result["role"] == "tool" and result["tool_call_id"] == call["tool_calls"][0]["id"]
    assert PER_DIEM in result["content"]


def test_a_restricted_key_never_observes_a_forbidden_document_however_the_model_asks(make_client, data_dir, llm):
    client, auth, pdf, _ = make_world(make_client, data_dir, llm_base_url=llm.base_url, llm_model="m",
                                      llm_api_key="k", llm_timeout=3, llm_max_retries=0, agent_max_steps=8,
                                      agent_plan=False)
    secret = "25 days of paid annual leave"
    asks = [step("search", "how many days of paid annual leave"), step("read", pdf["id"]),
            step("read", f"{pdf['id']} page 2"), step("list_documents", "handbook"),
            step("search", "Kestrel Labs employee handbook leave and time off"), step("read", "1"),
            step("answer")]
    llm.script(*asks, "Employees get 25 days of paid annual leave [1].")
    bob = client.post("/v1/ask", json={"question": "How much annual leave?", "mode": "agent"}, headers=auth["bob"])
    assert bob.status_code == 200
    body = bob.json()
    assert len(body["steps"]) == 6
    seen = json.dumps(body["steps"]) + json.dumps([q["body"] for q in llm.requests])
    assert secret not in seen and "Parental leave" not in seen
    # the document's id shows only where the model's own read of it is refused
    assert [s["observation"] for s in body["steps"] if pdf["id"] in s["observation"]] == [
        body["steps"][1]["observation"], body["steps"][2]["observation"]]
    assert body["steps"][1]["observation"] == body["steps"][2]["observation"].replace(" page 2", "") == (
        f"error: no readable document with id {pdf['id']!r}")  # the same reply as for an unknown id
    assert "Employee Handbook" not in body["steps"][3]["observation"]
    assert secret not in body["answer"] and all(c["document_id"] != pdf["id"] for c in body["citations"])
    # the same run for alice, who may read it, does see it: the test can fail
    llm.requests.clear()
    llm.script(*asks, "Employees get 25 days of paid annual leave [1].")
    alice = client.post("/v1/ask", json={"question": "How much annual leave?", "mode": "agent"},
                        headers=auth["alice"]).json()
    assert secret in json.dumps(alice["steps"]) and any(c["document_id"] == pdf["id"] for c in alice["citations"])


def test_a_looping_model_is_stopped_and_the_answer_says_so(agent_client, llm):
    llm.script(step("search", "per diem outside Europe"), step("search", "Per diem  outside europe"),
               "The per diem outside Europe is 80 EUR per day [1].")
    body = agent_client.post("/v1/ask", json={"question": Q, "mode": "agent"}).json()
    assert len(body["steps"]) == 1 and "step 2 repeated an earlier action" in body["fallback"]
    assert body["grounded"] and PER_DIEM in body["citations"][0]["quote"]  # answered from what it observed
    assert len(llm.requests) == 3


def test_a_model_still_searching_when_the_steps_run_out_is_stopped(make_client, llm):
    client = make_client(llm_base_url=llm.base_url, llm_model="m", llm_api_key="k", llm_timeout=3,
                         llm_max_retries=0, agent_max_steps=2, agent_plan=False)
    llm.script(step("search", "per diem"), step("search", "travel policy"), "Per diem is 80 EUR per day [1].")
    body = client.post("/v1/ask", json={"question": Q, "mode": "agent"}).json()
    assert len(body["steps"]) == 2 and body["fallback"] == "the model was still working after 2 steps"


@pytest.mark.parametrize("bad", ["Sure! Let me search for that.", step("delete_everything", "now"),
                                 json.dumps({"thought": 1, "action": "search", "input": "x"}),
                                 step("calculate", "x" * 300)])
def test_a_malformed_step_falls_back_to_the_single_shot_answer(agent_client, llm, bad):
    llm.script(bad, "The per diem outside Europe is 80 EUR per day [1].")
    body = agent_client.post("/v1/ask", json={"question": Q, "mode": "agent"}).json()
    assert body["fallback"].startswith("step 1: ")
    # nothing observed: the harness searches for the question itself, a step of its own, and answers from that
    assert [(s["tool"], s["input"], s["thought"]) for s in body["steps"]] == [
        ("search", Q, "(the harness) search for the question itself")]
    assert body["grounded"] and PER_DIEM in body["citations"][0]["quote"]
    final = llm.requests[-1]["body"]
    assert final["stream"] is True and "<context n=\"1\"" in final["messages"][-1]["content"]


def test_a_model_down_during_the_steps_falls_back_then_503_when_it_cannot_answer(agent_client, llm):
    llm.script(Reply(status=500, text="boom"), Reply(status=500, text="boom"))
    r = agent_client.post("/v1/ask", json={"question": Q, "mode": "agent"})
    assert r.status_code == 503 and r.json()["reason"] == "the language model answered HTTP 500"
    assert r.json()["sources"]  # what it retrieved, as single-shot answers do


def test_steps_stream_as_they_happen_then_the_answer(agent_client, llm):
    llm.script(step("search", "per diem outside Europe"), step("answer"),
               Reply(deltas=["The per diem outside Europe ", "is 80 EUR per day [1]."]))
    with agent_client.stream("POST", "/v1/ask", json={"question": Q, "mode": "agent", "stream": True}) as r:
        events = sse_events(r.read().decode())
    kinds = [e for e, _ in events]
    assert kinds[0] == "step" and kinds[-2:] == ["citations", "done"] and set(kinds[1:-2]) == {"delta"}
    assert "".join(d["text"] for e, d in events if e == "delta") == "The per diem outside Europe is 80 EUR per day [1]."
    assert events[0][1]["tool"] == "search" and PER_DIEM in events[0][1]["observation"]
    final = events[-2][1]
    assert final["answer"] == "The per diem outside Europe is 80 EUR per day [1]." and final["fallback"] is None
    assert [s["tool"] for s in final["steps"]] == ["search"]


def test_old_observations_are_dropped_for_room_and_the_step_says_so(make_client, llm):
    client = make_client(llm_base_url=llm.base_url, llm_model="m", llm_api_key="k", llm_timeout=3,
                         llm_max_retries=0, llm_context_window=1400, llm_answer_tokens=128, agent_plan=False)
    llm.script(step("search", "per diem outside Europe"), step("search", "hotel limits"),
               step("search", "laptop replacement"), step("answer"), "Per diem is 80 EUR per day [1].")
    body = client.post("/v1/ask", json={"question": Q, "mode": "agent"}).json()
    notes = [s["note"] for s in body["steps"]]
    assert notes[0] == "" and any("dropped for room" in n for n in notes[1:]), notes
    last_step_request = llm.requests[3]["body"]["messages"]
    assert DROPPED in [m["content"] for m in last_step_request]
    assert last_step_request[1]["content"] == f"Question: {Q}"  # the question is never dropped


def test_agent_mode_needs_a_language_model_and_only_known_tools(client, agent_client, llm):
    r = client.post("/v1/ask", json={"question": Q, "mode": "agent"})
    assert r.status_code == 403 and "agent mode needs a language model" in r.json()["detail"]
    llm.script("The per diem outside Europe is 80 EUR per day [1].")
    r = agent_client.post("/v1/ask", json={"question": Q, "tools": ["search"]})  # single-shot: no tools used
    assert r.status_code == 200 and r.json()["steps"] is None and len(llm.requests) == 1
    limited = agent_client.app.state.services.answerer("agent", ["search"])
    assert [t.name for t in limited.tools] == ["search"]
    r = agent_client.post("/v1/ask", json={"question": Q, "mode": "agent", "tools": ["shell"]})
    assert r.status_code == 422 and "tools.0" in r.json()["error"]


def test_planning_searches_each_part_of_the_question_before_the_model_acts(make_client, llm):
    client = make_client(llm_base_url=llm.base_url, llm_model="m", llm_api_key="k", llm_timeout=3,
                         llm_max_retries=0, agent_constraint="json_object")
    question = "What is the per diem outside Europe, and how long is parental leave?"
    llm.script(json.dumps({"queries": ["per diem outside Europe", "parental leave length", "per diem outside Europe"]}),
               step("answer"),
               "The per diem outside Europe is 80 EUR per day [1]. Parental leave is 20 weeks at full pay [2].")
    body = client.post("/v1/ask", json={"question": question, "mode": "agent"}).json()
    assert [(s["tool"], s["input"]) for s in body["steps"]] == [("search", "per diem outside Europe"),
                                                                ("search", "parental leave length")]  # deduplicated
    assert body["steps"][0]["thought"] == "the question asks for: per diem outside Europe"
    assert body["fallback"] is None and body["grounded"] and len(body["citations"]) == 2
    plan, decide, _ = [q["body"] for q in llm.requests]
    assert plan["messages"] == [{"role": "system", "content": PLAN_PROMPT}, {"role": "user", "content": question}]
    assert plan["response_format"] == {"type": "json_object", "schema": {
        "type": "object", "additionalProperties": False, "required": ["queries"],
        "properties": {"queries": {"type": "array", "items": {"type": "string"}}}}}
    # the model decides next having seen both searches, as if it had made them
    assert [m["role"] for m in decide["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert json.loads(decide["messages"][4]["content"])["input"] == "parental leave length"
    assert "20 weeks" in decide["messages"][5]["content"]
    # a plan the harness cannot use: the model acts step by step from the start, and that is no failure
    llm.requests.clear()
    llm.script("no plan here", step("search", "per diem outside Europe"), step("answer"),
               "The per diem outside Europe is 80 EUR per day [1].")
    body = client.post("/v1/ask", json={"question": Q, "mode": "agent"}).json()
    assert [s["input"] for s in body["steps"]] == ["per diem outside Europe"] and body["fallback"] is None


def test_calculate_takes_only_an_expression_from_a_step():
    from service.agent.protocols import StepError, _capped
    from service.agent.tools import Calculate

    assert _capped(" 80 * 3 ", Calculate()) == "80 * 3"
    for bad in ["12.4.2.1. 12.4.2.1.", "25", "import os", "2 +"]:
        with pytest.raises(StepError, match="not of the form"):
            _capped(bad, Calculate())


def test_without_a_search_tool_nothing_observed_is_not_in_the_documents(agent_client, llm):
    llm.script(step("answer"))
    body = agent_client.post("/v1/ask", json={"question": Q, "mode": "agent", "tools": ["calculate"]}).json()
    assert body["abstained"] and body["citations"] == [] and body["steps"] == []
    assert body["fallback"] == "the run observed no document" and len(llm.requests) == 1  # no answer call
