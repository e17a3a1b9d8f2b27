"""LocalBackend: the M2 network behind the Backend seam (`stream(messages, tools, params) -> events`).

The prompt is rendered by the M2 format layer, generated here, and the raw completion (which starts inside
the reasoning block opened by the generation prompt) is fed to the format layer's parser as it streams.
"""

from __future__ import annotations

import collections.abc
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.backends.base import GenerationParams
from agent.backends.events import BackendEvent, StreamEnd, ToolCallEvent, Usage
from agent.backends.local.generate import Generator, SamplingParams
from agent.backends.local.loader import load_model
from agent.backends.local.tokenizer import M2Tokenizer
from agent.backends.messages import Message

# Per round, unless the request (the `max_output_tokens` setting) says otherwise: room for M2's reasoning
# and a tool call, without a runaway round costing minutes on a CPU.
DEFAULT_MAX_NEW_TOKENS = 4096
PROGRESS_SECONDS = 2.0  # how often a round in progress reports itself


def sampling_from(defaults: SamplingParams, params: GenerationParams | None) -> SamplingParams:
    """The request's sampling over the checkpoint's defaults (None keeps a default); temperature 0 is greedy."""
    if params is None:
        return defaults
    changes: dict[str, Any] = {}
    if params.temperature is not None:
        changes["temperature"] = params.temperature
        if params.temperature <= 0:
            changes["greedy"] = True
    if params.top_p is not None:
        changes["top_p"] = params.top_p
    if params.top_k is not None:
        changes["top_k"] = params.top_k
    if params.seed is not None:
        changes["seed"] = params.seed
    return replace(defaults, **changes)


class LocalModel:
    """Model + tokenizer + generator + the checkpoint's sampling defaults."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        dtype: str | None = None,
        device: str = "cpu",
        max_seq_len: int | None = None,
        compile: bool = False,
    ) -> None:
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"{model_dir}: no such checkpoint directory")
        self.tokenizer = M2Tokenizer(model_dir)
        self.model = load_model(model_dir, dtype=dtype, device=device)  # builds the CPU kernels if needed
        if self.tokenizer.vocab_size > self.model.args.vocab_size:
            raise ValueError(
                f"{model_dir}: tokenizer has {self.tokenizer.vocab_size} tokens but the model's "
                f"vocabulary is {self.model.args.vocab_size}"
            )
        self.generator = Generator(self.model, max_seq_len=max_seq_len, compile=compile)
        self.defaults = SamplingParams()
        gen_config = model_dir / "generation_config.json"
        if gen_config.is_file():
            g = json.loads(gen_config.read_text())
            self.defaults = SamplingParams(
                temperature=float(g.get("temperature", 1.0)),
                top_p=float(g.get("top_p", 0.95)),
                top_k=int(g.get("top_k", 40)),
                greedy=g.get("do_sample") is False,
            )


class LocalBackend:
    """`--backend local --model DIR`: generate with the M2 network in this process."""

    name = "local"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        dtype: str | None = None,
        device: str = "cpu",
        max_seq_len: int | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        compile: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.lm = LocalModel(model_dir, dtype=dtype, device=device, max_seq_len=max_seq_len, compile=compile)
        self.model = str(model_dir)
        self.context_window = self.lm.generator.max_seq_len
        self.max_new_tokens = max_new_tokens
        self.progress = progress  # one line every few seconds while a round generates
        self.rounds = 0
        self._one_at_a_time = threading.Lock()  # one generator and one cache: subagents take turns

    def credentials(self) -> dict[str, str]:
        return {}  # a model on this machine holds no keys

    def count_tokens(self, text: str) -> int:
        """Exact prompt size, for the agent's context budget."""
        return len(self.lm.tokenizer.encode(text))

    def close(self) -> None:
        pass  # the weights go with the object; nothing else is held open

    def stream(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams | None = None
    ) -> collections.abc.Generator[BackendEvent, None, None]:
        """Render, generate and parse: reasoning/text deltas and tool calls as they complete, then Usage,
        then StreamEnd (stop | tool_calls | length). None fields of `params` keep the checkpoint's
        sampling defaults and the per-round token cap. A prompt longer than the context window raises
        generate.ContextLengthError before anything is generated."""
        with self._one_at_a_time:
            yield from self._generate(messages, tools, params)

    def _generate(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams | None
    ) -> collections.abc.Generator[BackendEvent, None, None]:
        from agent.backends.m2.parse import CompletionParser
        from agent.backends.m2.render import render_prompt

        tok, gen = self.lm.tokenizer, self.lm.generator
        ids = tok.encode(render_prompt(messages, tools or None))
        sampling = sampling_from(self.lm.defaults, params)
        budget = (params.max_tokens if params is not None else None) or self.max_new_tokens

        self.rounds += 1
        report = RoundProgress(self.progress, self.rounds, len(ids), budget)
        parser = CompletionParser(tools or [])
        decoder = tok.stream()
        output = reasoning = 0
        thinking = True  # the generation prompt opens <think>
        saw_call = False
        end: StreamEnd | None = None

        def emit(events: list) -> Iterator[BackendEvent]:
            nonlocal saw_call, end
            for event in events:
                if isinstance(event, StreamEnd):
                    end = event  # sent last, after Usage
                    continue
                saw_call = saw_call or isinstance(event, ToolCallEvent)
                yield event

        for tid in gen.generate(ids, budget, sampling, stop_ids=(tok.eos_id,)):
            output += 1
            report.tick(output)
            if thinking:
                reasoning += 1
                thinking = tid != tok.think_end_id
            text = decoder.push(tid)
            if text:
                yield from emit(parser.feed(text))
        report.done(output, gen.stop_reason)
        tail = decoder.flush()
        if tail:
            yield from emit(parser.feed(tail))
        yield from emit(parser.finish())
        yield Usage(
            input_tokens=len(ids),
            output_tokens=output,
            reasoning_tokens=reasoning,
            cached_tokens=gen.reused_tokens,
        )
        if gen.stop_reason == "length":
            yield StreamEnd("length")
        else:
            yield end or StreamEnd("tool_calls" if saw_call else "stop")


class RoundProgress:
    """`round 3: 512/4096 tokens, 41 tok/s, 12 s` every few seconds, and once when the round ends."""

    def __init__(self, sink: Callable[[str], None] | None, round_no: int, prompt: int, budget: int) -> None:
        self.sink, self.round_no, self.prompt, self.budget = sink, round_no, prompt, budget
        self.started = self.last = time.monotonic()

    def _line(self, tokens: int, suffix: str = "") -> str:
        elapsed = time.monotonic() - self.started
        rate = tokens / elapsed if elapsed > 0 else 0.0
        return (
            f"round {self.round_no}: {tokens}/{self.budget} tokens after a {self.prompt:,}-token prompt, "
            f"{rate:.1f} tok/s, {elapsed:.0f} s{suffix}"
        )

    def tick(self, tokens: int) -> None:
        if self.sink is not None and time.monotonic() - self.last >= PROGRESS_SECONDS:
            self.last = time.monotonic()
            self.sink(self._line(tokens))

    def done(self, tokens: int, stop_reason: str) -> None:
        if self.sink is not None:
            ended = " (at the round's token limit)" if stop_reason == "length" else ""
            self.sink(self._line(tokens, f", done{ended}"))
