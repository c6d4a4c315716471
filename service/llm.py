"""Language models behind one small protocol, `ChatModel.complete(messages) -> Iterator[str]`.

`OpenAIChatModel` speaks to any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, llama.cpp's server, vLLM,
Ollama) through the official `openai` client, streaming, with a timeout and retries with backoff (the
client's own). Every failure to get an answer becomes `LLMUnavailableError` with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from service.errors import LLMUnavailableError
from service.tokens import estimate_tokens

log = logging.getLogger(__name__)


class ChatModel(Protocol):
    def complete(self, messages: list[dict[str, str]], *, max_tokens: int) -> Iterator[str]: ...


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
        import openai

        started = time.perf_counter()
        usage = Usage()
        produced: list[str] = []
        try:
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
        except (openai.APIError, ValueError, KeyError, AttributeError, TypeError) as exc:
            raise LLMUnavailableError("malformed answer from the language model",
                                      detail=f"malformed answer from the language model at {self.base_url}: "
                                             f"{exc}") from None
        if not produced:
            raise LLMUnavailableError("the language model returned an empty answer")
        usage.seconds = time.perf_counter() - started
        if not usage.completion_tokens:  # the server sent no usage: estimate
            usage.completion_tokens = estimate_tokens("".join(produced))
            usage.prompt_tokens = sum(estimate_tokens(m["content"]) for m in messages)
        if self.on_usage is not None:
            self.on_usage(usage)


def _brief(exc: Any) -> str:
    try:
        body = exc.response.text
    except Exception:
        body = str(exc)
    return " ".join(str(body).split())[:300]
