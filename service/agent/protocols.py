"""How the model is asked for its next step: two protocols behind one small interface.

- `ToolCalling`: OpenAI tool calling (`tools` / `tool_calls`), the ecosystem's standard, for models and servers
  that support it. The model's text beside a call is its thought; a reply with no call ends the loop.
- `ReActJson`: for models and servers without tool calling (small local models). Each step is one JSON object
  {"thought", "action", "input"} whose schema lists the enabled tools, caps the thought and the input, and
  restricts `calculate` to arithmetic. The schema is sent as `response_format`: OpenAI's `json_schema` form
  (OpenAI, vLLM, llama.cpp's own server), or the `json_object` + `schema` form of llama-cpp-python's server,
  which compiles it into a grammar (QUELLE_AGENT_CONSTRAINT); the harness checks every step against it anyway.

A step the harness cannot use (not JSON, an unknown tool, an argument of the wrong type) raises `StepError`,
which ends the loop: the agent then falls back to the single-shot answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from service.agent.tools import Tool
from service.llm import ChatModel

THOUGHT_CHARS = 300
FINISH = "answer"  # the ReAct action that ends the loop

Constraint = Literal["json_schema", "json_object", "none"]


class StepError(ValueError):
    """The model's step cannot be used; the message says what was wrong."""


@dataclass(frozen=True)
class Decision:
    thought: str
    tool: str | None  # None: the model is done
    input: str = ""
    call_id: str = ""
    arg: str = ""  # the tool's argument name (tool calling echoes the call back as the model made it)


class StepProtocol(Protocol):
    name: str

    def start(self, question: str, history: list[dict[str, str]], tools: list[Tool]) -> list[dict[str, Any]]:
        """The first messages of a run."""
        ...

    def decide(self, model: ChatModel, messages: list[dict[str, Any]], tools: list[Tool],
               max_tokens: int) -> Decision: ...

    def record(self, messages: list[dict[str, Any]], decision: Decision, observation: str) -> None:
        """Append the step and what it observed to the run's messages."""
        ...


def _rules(tools: list[Tool]) -> str:
    names = {t.name for t in tools}
    rules = ["Find the facts in the documents before you answer; never answer from memory."]
    if "search" in names:
        rules.append("Start with search. A question with several parts needs a search for each part, each with "
                     "other words; never repeat a search.")
    if "calculate" in names:
        rules.append("Use calculate for any arithmetic.")
    return " ".join(rules)


class ToolCalling:
    name = "tools"

    def start(self, question: str, history: list[dict[str, str]], tools: list[Tool]) -> list[dict[str, Any]]:
        system = ("You answer questions about the company's documents by calling tools. " + _rules(tools)
                  + " When the tools have shown what the answer needs, reply without a tool call.")
        return [{"role": "system", "content": system}, *history, {"role": "user", "content": question}]

    @staticmethod
    def schemas(tools: list[Tool]) -> list[dict[str, Any]]:
        out = []
        for t in tools:
            props = {t.arg: t.schema()} if t.arg else {}
            out.append({"type": "function", "function": {
                "name": t.name, "description": t.description,
                "parameters": {"type": "object", "properties": props, "required": list(props),
                               "additionalProperties": False}}})
        return out

    def decide(self, model: ChatModel, messages: list[dict[str, Any]], tools: list[Tool],
               max_tokens: int) -> Decision:
        turn = model.step(messages, max_tokens=max_tokens, tools=self.schemas(tools))
        thought = " ".join(turn.content.split())[:THOUGHT_CHARS]
        if not turn.tool_calls:
            return Decision(thought, None)
        call = turn.tool_calls[0]  # one action per step: the others are not run (nor recorded)
        tool = next((t for t in tools if t.name == call.name), None)
        if tool is None:
            raise StepError(f"the model called an unknown tool {call.name[:40]!r}")
        try:
            args = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            raise StepError(f"the arguments of {call.name} are not JSON: {call.arguments[:80]!r}") from None
        value = args.get(tool.arg, "") if isinstance(args, dict) and tool.arg else ""
        if not isinstance(value, str):
            raise StepError(f"the argument {tool.arg!r} of {call.name} is not a string")
        return Decision(thought, tool.name, _capped(value, tool), call.id, tool.arg)

    def record(self, messages: list[dict[str, Any]], decision: Decision, observation: str) -> None:
        assert decision.tool is not None
        args = json.dumps({decision.arg: decision.input} if decision.arg else {}, ensure_ascii=False)
        messages.append({"role": "assistant", "content": decision.thought or None, "tool_calls": [
            {"id": decision.call_id, "type": "function", "function": {"name": decision.tool, "arguments": args}}]})
        messages.append({"role": "tool", "tool_call_id": decision.call_id, "content": observation})


class ReActJson:
    name = "react"

    # after each observation: a small model otherwise repeats itself or reaches for an unrelated tool
    next_hint = (f"Next: if a part of the question is not found yet, search for it with other words; if every "
                 f"part is found, {FINISH}.")

    def __init__(self, constraint: Constraint = "json_schema") -> None:
        self.constraint = constraint

    def start(self, question: str, history: list[dict[str, str]], tools: list[Tool]) -> list[dict[str, Any]]:
        listed = "\n".join(f"- {t.name}: {t.description}" for t in tools)
        system = ("You answer questions about the company's documents one step at a time. Reply with one JSON "
                  'object: {"thought": "<why, briefly>", "action": "<a tool or answer>", "input": "<its input>"}.\n'
                  f"Tools:\n{listed}\n- {FINISH}: finish, when the observations hold what the answer needs "
                  f"(input: '').\n{_rules(tools)}")
        return [{"role": "system", "content": system}, *history, {"role": "user", "content": f"Question: {question}"}]

    @staticmethod
    def schema(tools: list[Tool]) -> dict[str, Any]:
        """One JSON object per step: the enabled tools (each with its own input) or the finish action."""
        thought = {"type": "string", "maxLength": THOUGHT_CHARS}
        options = [{"type": "object", "additionalProperties": False, "required": ["thought", "action", "input"],
                    "properties": {"thought": thought, "action": {"const": t.name}, "input": t.schema()}}
                   for t in tools]
        options.append({"type": "object", "additionalProperties": False, "required": ["thought", "action", "input"],
                        "properties": {"thought": thought, "action": {"const": FINISH},
                                       "input": {"type": "string", "maxLength": 0}}})
        return {"anyOf": options}

    def response_format(self, tools: list[Tool]) -> dict[str, Any] | None:
        if self.constraint == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "agent_step", "strict": True,
                                                           "schema": self.schema(tools)}}
        if self.constraint == "json_object":
            return {"type": "json_object", "schema": self.schema(tools)}
        return None

    def decide(self, model: ChatModel, messages: list[dict[str, Any]], tools: list[Tool],
               max_tokens: int) -> Decision:
        turn = model.step(messages, max_tokens=max_tokens, response_format=self.response_format(tools))
        step = _json_object(turn.content)
        action, value, thought = step.get("action"), step.get("input", ""), step.get("thought", "")
        if not isinstance(action, str) or not isinstance(value, str) or not isinstance(thought, str):
            raise StepError("the step's action, input and thought must be strings")
        thought = " ".join(thought.split())[:THOUGHT_CHARS]
        if action == FINISH:
            return Decision(thought, None)
        tool = next((t for t in tools if t.name == action), None)
        if tool is None:
            raise StepError(f"the step names an unknown action {action[:40]!r}")
        return Decision(thought, tool.name, _capped(value, tool))

    def record(self, messages: list[dict[str, Any]], decision: Decision, observation: str) -> None:
        step = {"thought": decision.thought, "action": decision.tool, "input": decision.input}
        messages.append({"role": "assistant", "content": json.dumps(step, ensure_ascii=False)})
        messages.append({"role": "user", "content": f"Observation:\n{observation}\n\n{self.next_hint}"})


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def _capped(value: str, tool: Tool) -> str:
    """The input, checked against its tool's schema (an unconstrained model may write anything)."""
    schema = tool.schema()
    most = schema.get("maxLength")
    value = value.strip()
    if most is not None and len(value) > most:
        raise StepError(f"the input of {tool.name} is longer than {most} characters")
    if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
        raise StepError(f"the input of {tool.name} is not of the form it takes: {value[:60]!r}")
    return value


PLAN_PROMPT = ("Split the question into the separate facts it asks for, as short search queries in the "
               "question's language, one per fact, at most 3. Reply with JSON: {\"queries\": [\"...\"]}.")


def plan_queries(model: ChatModel, question: str, constraint: Constraint, max_tokens: int) -> list[str]:
    """The search queries a question needs, one per fact it asks for (at most 3), from one constrained
    reply. The schema has no length bounds (OpenAI's strict mode refuses them): the harness caps instead."""
    schema = {"type": "object", "additionalProperties": False, "required": ["queries"],
              "properties": {"queries": {"type": "array", "items": {"type": "string"}}}}
    fmt: dict[str, Any] | None = None
    if constraint == "json_schema":
        fmt = {"type": "json_schema", "json_schema": {"name": "plan", "strict": True, "schema": schema}}
    elif constraint == "json_object":
        fmt = {"type": "json_object", "schema": schema}
    turn = model.step([{"role": "system", "content": PLAN_PROMPT}, {"role": "user", "content": question}],
                      max_tokens=max_tokens, response_format=fmt)
    got = _json_object(turn.content).get("queries")
    if not isinstance(got, list) or not all(isinstance(q, str) for q in got):
        raise StepError("the plan is not a list of queries")
    queries = list(dict.fromkeys(" ".join(q.split())[:200] for q in got if len(q.strip()) >= 2))[:3]
    if not queries:
        raise StepError("the plan holds no query")
    return queries


def _json_object(text: str) -> dict[str, Any]:
    """The step's JSON object; a fenced block or text around one object is tolerated (an unconstrained model)."""
    bare = _FENCE.sub("", text.strip())
    try:
        got = json.loads(bare)
    except json.JSONDecodeError:
        start, end = bare.find("{"), bare.rfind("}")
        try:
            got = json.loads(bare[start:end + 1]) if 0 <= start < end else None
        except json.JSONDecodeError:
            got = None
    if not isinstance(got, dict):
        raise StepError(f"the step is not one JSON object: {text[:80]!r}")
    return got
