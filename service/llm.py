"""Language models behind one small protocol: `ChatModel.complete(messages) -> Iterator[str]` streams an answer;
`ChatModel.step(messages, tools=..., response_format=..., stop=...) -> Turn` takes one agent step (not
streamed): OpenAI tool calling (`tools`, the model's `tool_calls` come back), or output constrained by a JSON
schema (`response_format`, which llama.cpp's servers turn into a grammar), cut at `stop`.

`OpenAIChatModel` speaks to any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, llama.cpp's server, vLLM,
Ollama) through the official `openai` client, streaming, with a timeout and retries with backoff (the
client's own). Every failure to get an answer becomes `LLMUnavailableError` with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from service.errors import LLMUnavailableError
from service.tokens import estimate_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON, as the model wrote it (the harness parses and checks it)


@dataclass(frozen=True)
class Turn:
    """One non-streamed reply: its text, and the tools it calls (OpenAI tool calling)."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


class ChatModel(Protocol):
    def complete(self, messages: list[dict[str, str]], *, max_tokens: int) -> Iterator[str]: ...

    def step(self, messages: list[dict[str, Any]], *, max_tokens: int, tools: list[dict[str, Any]] | None = None,
             response_format: dict[str, Any] | None = None, stop: list[str] | None = None) -> Turn: ...


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


class OpenAIChatModel:
    def __init__(self, *, base_url: str | None, api_key: str | None, model: str, timeout: float = 60.0,
                 max_retries: int = 2, temperature: float = 0.1, http_client: Any = None) -> None:
        import openai

        self.model = model
        self.base_url = base_url or "https://api.openai.com/v1"
        self.temperature = temperature
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout,
                                     max_retries=max_retries, http_client=http_client)
        self.on_usage: Any = None  # called with a Usage after each completion (metrics)

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int) -> Iterator[str]:
        started = time.perf_counter()
        usage = Usage()
        produced: list[str] = []
        with self._failures():
            stream = self._client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=max_tokens,  # type: ignore[arg-type]
                temperature=self.temperature, stream=True,
            )
            event: Any
            for event in stream:
                if getattr(event, "usage", None):
                    usage.prompt_tokens = event.usage.prompt_tokens or 0
                    usage.completion_tokens = event.usage.completion_tokens or 0
                if not getattr(event, "choices", None):
                    continue
                delta = event.choices[0].delta
                text = getattr(delta, "content", None)
                if text:
                    produced.append(text)
                    yield text
        if not produced:
            raise LLMUnavailableError("the language model returned an empty answer")
        usage.seconds = time.perf_counter() - started
        if not usage.completion_tokens:  # the server sent no usage: estimate
            usage.completion_tokens = estimate_tokens("".join(produced))
            usage.prompt_tokens = sum(estimate_tokens(m["content"]) for m in messages)
        if self.on_usage is not None:
            self.on_usage(usage)

    def step(self, messages: list[dict[str, Any]], *, max_tokens: int, tools: list[dict[str, Any]] | None = None,
             response_format: dict[str, Any] | None = None, stop: list[str] | None = None) -> Turn:
        started = time.perf_counter()
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = tools
            extra["tool_choice"] = "auto"
        if response_format is not None:
            extra["response_format"] = response_format
        if stop:
            extra["stop"] = stop
        with self._failures():
            reply: Any = self._client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=max_tokens,  # type: ignore[arg-type]
                temperature=self.temperature, stream=False, **extra)
            choice = reply.choices[0]
            message = choice.message
            calls = tuple(ToolCall(c.id or f"call_{i}", c.function.name, c.function.arguments or "{}")
                          for i, c in enumerate(message.tool_calls or ()))
            turn = Turn(message.content or "", calls, choice.finish_reason)
        if self.on_usage is not None:
            got = getattr(reply, "usage", None)
            self.on_usage(Usage(getattr(got, "prompt_tokens", 0) or 0, getattr(got, "completion_tokens", 0) or 0,
                                time.perf_counter() - started))
        return turn

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """Every failure to get a reply, as LLMUnavailableError with the reason."""
        import openai

        try:
            yield
        except openai.APITimeoutError:
            raise LLMUnavailableError("the language model timed out",
                                      detail=f"the language model at {self.base_url} timed out") from None
        except openai.APIConnectionError as exc:
            raise LLMUnavailableError("cannot reach the language model",
                                      detail=f"cannot reach the language model at {self.base_url}: {exc}") from None
        except openai.APIStatusError as exc:
            raise LLMUnavailableError(
                f"the language model answered HTTP {exc.status_code}",
                detail=f"the language model at {self.base_url} answered HTTP {exc.status_code}: {_brief(exc)}",
            ) from None
        except (openai.APIError, ValueError, KeyError, AttributeError, TypeError, IndexError) as exc:
            raise LLMUnavailableError("malformed answer from the language model",
                                      detail=f"malformed answer from the language model at {self.base_url}: "
                                             f"{exc}") from None


def _brief(exc: Any) -> str:
    try:
        body = exc.response.text
    except Exception:
        body = str(exc)
    return " ".join(str(body).split())[:300]
