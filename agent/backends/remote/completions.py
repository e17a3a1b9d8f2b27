"""Raw completions (`/v1/completions`): we render the M2 prompt and parse the raw text ourselves.

For servers with no M2 tool or reasoning parser. The prompt carries the reasoning of every
assistant message after the last user message, rendered by the format layer exactly as the official
template does, so the thinking round-trips by construction.
"""

from __future__ import annotations

from typing import Any

from agent.backends.base import BackendError, GenerationParams
from agent.backends.events import BackendEvent, StreamEnd
from agent.backends.m2.parse import CompletionParser
from agent.backends.m2.render import RenderError, render_prompt
from agent.backends.messages import Message
from agent.backends.remote.http import RemoteBackend
from agent.backends.remote.openai_chat import ChoiceDecoder

END_OF_TURN = "[e~["
RENDERED_PROMPT = "rendered_prompt"  # the reasoning mode: ours, in the prompt we render


class CompletionsBackend(RemoteBackend):
    kind = "completions"
    default_max_tokens = 16384  # OpenAI-style completions default to 16 tokens when it is left out

    def __init__(self, *, stream_usage: bool = True, keep_special_tokens: bool = True, **common: Any) -> None:
        super().__init__(**common)
        self.stream_usage = stream_usage
        # vLLM and SGLang drop special tokens from the text by default; `<think>` and the tool-call
        # markers must survive for our parser to see them.
        self.keep_special_tokens = keep_special_tokens

    def build_request(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams
    ) -> tuple[str, dict[str, Any]]:
        try:
            prompt = render_prompt(messages, tools or None)
        except (RenderError, ValueError) as exc:
            raise BackendError(
                f"{self.name}: cannot render the conversation as an M2 prompt: {exc}"
            ) from None
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "stream": True,
            "stop": [END_OF_TURN],
            "max_tokens": self.max_tokens(params),
        }
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        if self.keep_special_tokens:
            body["skip_special_tokens"] = False
        body.update(self.sampling_fields(params))
        return "completions", body

    def new_decoder(self, tools: list[dict[str, Any]]) -> CompletionDecoder:
        return CompletionDecoder(tools)


class CompletionDecoder(ChoiceDecoder):
    def __init__(self, tools: list[dict[str, Any]]) -> None:
        super().__init__()
        self._parser = CompletionParser(tools or None)

    def _choice(self, choice: dict[str, Any], whole: bool) -> list[BackendEvent]:
        text = choice.get("text")
        return self._parser.feed(text) if isinstance(text, str) and text else []

    def finish(self) -> list[BackendEvent]:
        out = [e for e in self._parser.finish() if not isinstance(e, StreamEnd)]
        self._set_stop_reason(bool(self._parser.tool_calls))
        return out

    def reasoning_mode(self) -> str | None:
        return RENDERED_PROMPT

    def reasoning_items(self) -> list[dict[str, Any]] | None:
        return None
