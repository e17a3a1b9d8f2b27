"""A backend that replays raw M2 completions from a file.

One JSON object per line: {"completion": "<raw text as the model emits it after the generation
prompt>"}. A record may add "when": a piece of text the rendered prompt must contain; such records
are picked by prompt (the first unused one that matches), the others in file order. That keeps a
replay deterministic when subagents ask for completions at the same time. A record with "error"
instead of "completion" makes that round fail with the error as a BackendError.

It renders the real prompt for every call (so what a model would have seen can be checked) and
parses each completion with the format layer, streaming it in small chunks the way a server would.
When no record is left for a prompt the round fails with a clear BackendError.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.backends.base import BackendError, GenerationParams
from agent.backends.events import BackendEvent, Usage
from agent.backends.m2.parse import CompletionParser
from agent.backends.m2.render import render_prompt
from agent.backends.messages import Message
from agent.backends.token_estimate import estimate_tokens

CHUNK_CHARS = 7  # about what one token decodes to: exercises the parser's streaming paths
RECORD_FORM = '{"completion": "<raw model text>"} (optionally with "when": "<prompt text>")'


@dataclass
class ReplayRecord:
    completion: str | None
    when: str | None = None  # picked only for a prompt that contains this text
    error: str | None = None  # the round fails with this message instead

    def matches(self, prompt: str) -> bool:
        return self.when is not None and self.when in prompt


def load_replay_file(path: Path) -> list[ReplayRecord]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BackendError(f"cannot read replay file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise BackendError(
            f"replay file {path} is not UTF-8 text (byte {exc.start}): expected JSON lines"
        ) from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BackendError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(record, dict):
            raise BackendError(f"{path}:{number}: expected {RECORD_FORM}")
        completion, when, error = record.get("completion"), record.get("when"), record.get("error")
        if not (isinstance(completion, str) or isinstance(error, str)) or not isinstance(when, str | None):
            raise BackendError(f"{path}:{number}: expected {RECORD_FORM}")
        records.append(ReplayRecord(completion, when, error))
    return records


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
        self.records = load_replay_file(self.path)
        self.unused = list(range(len(self.records)))
        self.prompts: list[str] = []
        self._record = Path(record_prompts) if record_prompts else None
        self._lock = threading.Lock()  # subagents' rounds can ask at the same time

    def credentials(self) -> dict[str, str]:
        return {}

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def close(self) -> None:
        pass

    def _take(self, prompt: str) -> ReplayRecord:
        with self._lock:
            self.prompts.append(prompt)
            if self._record is not None:
                with self._record.open("a", encoding="utf-8") as log:
                    log.write(json.dumps({"prompt": prompt}, ensure_ascii=False) + "\n")
            matching = [i for i in self.unused if self.records[i].matches(prompt)]
            in_order = [i for i in self.unused if self.records[i].when is None]
            if not matching and not in_order:
                raise BackendError(
                    f"replay file {self.path} ran out: it holds {len(self.records)} completions and none is "
                    f"left for call {len(self.prompts)}"
                )
            picked = (matching or in_order)[0]
            self.unused.remove(picked)
            return self.records[picked]

    def stream(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams
    ) -> Generator[BackendEvent, None, None]:
        prompt = render_prompt(messages, tools)
        record = self._take(prompt)
        if record.error is not None or record.completion is None:
            raise BackendError(str(record.error))
        text = record.completion
        parser = CompletionParser(tools)
        for start in range(0, len(text), CHUNK_CHARS):
            yield from parser.feed(text[start : start + CHUNK_CHARS])
        *events, end = parser.finish()
        yield from events
        yield Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text))
        yield end
