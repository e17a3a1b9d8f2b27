"""A backend that replays raw M2 completions from a file, in order.

One JSON object per line: {"completion": "<raw text as the model emits it after the generation
prompt>"}. It renders the real prompt for every call (so what a model would have seen can be
checked) and parses each completion with the format layer, streaming it in small chunks the way
a server would. When the file runs out the round fails with a clear BackendError.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

from agent.backends.base import BackendError, GenerationParams
from agent.backends.events import BackendEvent, Usage
from agent.backends.m2.parse import CompletionParser
from agent.backends.m2.render import render_prompt
from agent.backends.messages import Message
from agent.backends.token_estimate import estimate_tokens

CHUNK_CHARS = 7  # about what one token decodes to: exercises the parser's streaming paths


def load_replay_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BackendError(f"cannot read replay file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise BackendError(
            f"replay file {path} is not UTF-8 text (byte {exc.start}): expected JSON lines"
        ) from None
    completions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BackendError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("completion"), str):
            raise BackendError(f'{path}:{number}: expected {{"completion": "<raw model text>"}}')
        completions.append(record["completion"])
    return completions


class ReplayBackend:
    name = "replay"

    def __init__(
        self,
        path: str | Path,
        *,
        model: str = "replay",
        context_window: int = 196_608,
        record_prompts: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.model = model
        self.context_window = context_window
        self.completions = load_replay_file(self.path)
        self.used = 0
        self.prompts: list[str] = []
        self._record = Path(record_prompts) if record_prompts else None

    def credentials(self) -> dict[str, str]:
        return {}

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def close(self) -> None:
        pass

    def stream(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams
    ) -> Generator[BackendEvent, None, None]:
        prompt = render_prompt(messages, tools)
        self.prompts.append(prompt)
        if self._record is not None:
            with self._record.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"prompt": prompt}, ensure_ascii=False) + "\n")
        if self.used >= len(self.completions):
            raise BackendError(
                f"replay file {self.path} ran out: it holds {len(self.completions)} completions and the run "
                f"asked for call {self.used + 1}"
            )
        text = self.completions[self.used]
        self.used += 1
        parser = CompletionParser(tools)
        for start in range(0, len(text), CHUNK_CHARS):
            yield from parser.feed(text[start : start + CHUNK_CHARS])
        *events, end = parser.finish()
        yield from events
        yield Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text))
        yield end
