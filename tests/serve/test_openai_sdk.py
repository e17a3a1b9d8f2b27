"""The official openai SDK against `mmx-agent serve`: models, chat (tools, reasoning forms, streaming),
completions. Tool calls come from a crafted checkpoint whose greedy output is a known M2 tool call."""

from __future__ import annotations

import json

import openai
import pytest

from tests.serve.conftest import ADD_REASONING, serve

ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What is 17 + 25?"}]


@pytest.fixture(scope="module")
def add_server(add_checkpoint, tmp_path_factory):
    with serve(add_checkpoint, tmp_path_factory.mktemp("add"), "--served-model-name", "m2-add") as server:
        yield server


@pytest.fixture(scope="module")
def random_server(random_checkpoint, tmp_path_factory):
    # float32: a reused prefix then changes the logits too little to flip a seeded sample
    with serve(
        random_checkpoint, tmp_path_factory.mktemp("random"), "--dtype", "float32", "--max-tokens-cap", "40"
    ) as server:
        yield server


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0, timeout=120)


def test_models_lists_the_served_name_and_the_startup_line_says_what_runs(add_server):
    models = client(add_server).models.list()
    assert [m.id for m in models.data] == ["m2-add"]
    line = next(x for x in add_server.stderr().splitlines() if "ready at" in x)
    for part in (
        "device cpu",
        "dtype float32",
        "kernels ",
        "context 32,768 tokens",
        "memory ",
        add_server.v1,
    ):
        assert part in line


def test_chat_with_tools_returns_the_parsed_tool_call_and_reasoning_content(add_server):
    reply = client(add_server).chat.completions.create(
        model="m2-add", messages=QUESTION, tools=[ADD_TOOL], extra_body={"reasoning_split": True}
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "add"
    assert json.loads(call.function.arguments) == {"a": 17, "b": 25}  # typed by the tool's schema
    assert choice.message.model_extra["reasoning_content"] == ADD_REASONING
    assert not choice.message.content
    usage = reply.usage
    assert usage.completion_tokens == 9  # the chain's pieces but the end-of-turn marker
    assert usage.completion_tokens_details.reasoning_tokens == 2  # the reasoning and </think>
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert reply.id.startswith("chatcmpl-") and reply.model == "m2-add"


def test_chat_without_reasoning_split_puts_the_reasoning_inline(add_server):
    reply = client(add_server).chat.completions.create(model="m2-add", messages=QUESTION, tools=[ADD_TOOL])
    message = reply.choices[0].message
    assert message.content == f"<think>\n{ADD_REASONING}\n</think>\n\n"
    assert message.tool_calls[0].function.name == "add"


def test_history_with_tool_calls_and_tool_results_is_accepted_and_reuses_the_prefix(add_server):
    c = client(add_server)
    first = c.chat.completions.create(model="m2-add", messages=QUESTION, tools=[ADD_TOOL])
    call = first.choices[0].message.tool_calls[0]
    history = [
        *QUESTION,
        {
            "role": "assistant",
            "content": first.choices[0].message.content,
            "tool_calls": [call.model_dump()],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "42"},
    ]
    second = c.chat.completions.create(model="m2-add", messages=history, tools=[ADD_TOOL])
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 1


def test_streamed_chat_carries_the_tool_call_finish_reason_and_usage(add_server):
    stream = client(add_server).chat.completions.create(
        model="m2-add",
        messages=QUESTION,
        tools=[ADD_TOOL],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"reasoning_split": True},
    )
    reasoning, calls, finish, usage = "", [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            calls += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    assert reasoning == ADD_REASONING
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("add", {"a": 17, "b": 25})
    ]
    assert finish == "tool_calls"
    assert usage.completion_tokens == 9


def test_stop_string_cuts_the_text_and_max_tokens_caps_it(add_server):
    c = client(add_server)
    stopped = c.chat.completions.create(model="m2-add", messages=QUESTION, stop=["the add"], temperature=0)
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == "<think>\nI will add the numbers with \n</think>\n\n"
    capped = c.chat.completions.create(model="m2-add", messages=QUESTION, max_completion_tokens=3)
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage.completion_tokens == 3


def test_completions_with_a_string_and_with_token_ids(random_server):
    c = client(random_server)
    reply = c.completions.create(model=random_server.model, prompt="def add(a, b):", max_tokens=8, seed=1)
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.completion_tokens <= 8
    again = c.completions.create(model=random_server.model, prompt="def add(a, b):", max_tokens=8, seed=1)
    assert again.choices[0].text == reply.choices[0].text  # a seed makes sampling reproducible
    by_ids = c.completions.create(model=random_server.model, prompt=[5, 6, 7], max_tokens=4, temperature=0)
    assert by_ids.usage.prompt_tokens == 3


def test_streamed_completions_add_up_to_the_whole_text(random_server):
    c = client(random_server)
    whole = c.completions.create(model=random_server.model, prompt="hello", max_tokens=12, temperature=0)
    parts, finish = [], None
    for chunk in c.completions.create(
        model=random_server.model, prompt="hello", max_tokens=12, temperature=0, stream=True
    ):
        parts.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(parts) == whole.choices[0].text
    assert finish == whole.choices[0].finish_reason


def test_the_per_request_token_cap_lowers_what_a_request_asks_for(random_server):
    reply = client(random_server).completions.create(
        model=random_server.model, prompt=[3, 4], max_tokens=100, extra_body={"ignore_eos": True}
    )
    assert reply.usage.completion_tokens == 40
    assert reply.choices[0].finish_reason == "length"
