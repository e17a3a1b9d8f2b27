"""LocalBackend.stream end to end: render -> tokenize -> generate -> detokenize -> parse -> events.

A random model only babbles, so one test uses a crafted checkpoint: a real M2 network whose attention and
expert outputs are zero and whose embeddings/lm_head form a bigram chain, so greedy decoding writes a
known completion with a tool call (the tokenizer carries the chain's pieces as added tokens).
"""

from __future__ import annotations

import pytest

from agent.backends.base import GenerationParams
from agent.backends.events import ReasoningDelta, StreamEnd, TextDelta, ToolCallEvent, Usage
from agent.backends.local.backend import LocalBackend, sampling_from
from agent.backends.local.generate import Generator
from agent.backends.m2.parse import CompletionParser
from agent.backends.m2.render import render_prompt
from tests.local.scripted import CHAIN, build_scripted_checkpoint

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "Run a shell command.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
        },
    }
]
MESSAGES = [{"role": "user", "content": "What is here?"}]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    return build_scripted_checkpoint(tmp_path_factory.mktemp("scripted"))


def test_stream_emits_reasoning_tool_call_usage_end(scripted):
    backend = LocalBackend(scripted)
    assert backend.name == "local" and backend.context_window == 4096
    events = list(backend.stream(MESSAGES, TOOLS, GenerationParams(temperature=0)))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning.strip() == "Let me look."
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.name, c.arguments) for c in calls] == [("bash", {"command": "ls -la"})]
    assert not [e for e in events if isinstance(e, TextDelta) and e.text.strip()]
    usage, end = events[-2], events[-1]
    assert isinstance(usage, Usage) and isinstance(end, StreamEnd)
    assert end.stop_reason == "tool_calls"
    assert usage.output_tokens == len(CHAIN) - 1 and usage.reasoning_tokens == 2 and usage.cached_tokens == 0
    assert usage.input_tokens > 100  # the tools section is in the prompt

    # Next step of the same user turn: the prompt extends the previous one, so its prefix is reused.
    followup = MESSAGES + [
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "Let me look.",
            "tool_calls": [
                {
                    "id": "1",
                    "type": "function",
                    "function": {"name": "bash", "arguments": '{"command": "ls -la"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": "a.py"},
    ]
    events = list(backend.stream(followup, TOOLS, GenerationParams(temperature=0, max_tokens=3)))
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.cached_tokens >= usage.input_tokens // 2 and usage.output_tokens == 3
    assert events[-1] == StreamEnd("length")


def test_sampled_stream_equals_parsing_the_whole_completion(random_checkpoint):
    """Whatever the random model writes, the streamed events are what the parser makes of the full text."""
    backend = LocalBackend(random_checkpoint, dtype="float32")
    events = list(backend.stream(MESSAGES, TOOLS, GenerationParams(seed=3, max_tokens=40)))
    lm = backend.lm
    prompt = lm.tokenizer.encode(render_prompt(MESSAGES, TOOLS))
    gen = Generator(lm.model)  # a fresh prefill of the same prompt with the same seed
    ids = list(
        gen.generate(prompt, 40, sampling_from(lm.defaults, GenerationParams(seed=3)), (lm.tokenizer.eos_id,))
    )
    parser = CompletionParser(TOOLS)
    expected = parser.feed(lm.tokenizer.decode(ids)) + parser.finish()

    def merged(evs):  # delta boundaries differ between streaming and one-shot parsing
        out = []
        for e in evs:
            if isinstance(e, Usage):
                continue
            if out and type(out[-1]) is type(e) and isinstance(e, ReasoningDelta | TextDelta):
                out[-1] = type(e)(out[-1].text + e.text)
            else:
                out.append(e)
        return out

    got = merged(events)
    if gen.stop_reason == "length":
        expected = [e for e in expected if not isinstance(e, StreamEnd)] + [StreamEnd("length")]
    assert got == merged(expected)
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.output_tokens == len(ids) and usage.input_tokens == len(prompt)
