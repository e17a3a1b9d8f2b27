"""The remote backends' parts on their own: SSE, retry timing, reasoning forms, decoders, prices."""

import json

import pytest

from agent.backends.base import BackendError, GenerationParams
from agent.backends.events import FormatError, ReasoningDelta, TextDelta, ToolCallEvent
from agent.backends.messages import Message, ToolCall, messages_from_openai, messages_to_openai
from agent.backends.remote.anthropic import AnthropicDecoder
from agent.backends.remote.http import EndpointError
from agent.backends.remote.keys import ApiKey, scrub
from agent.backends.remote.openai_chat import ChatStreamDecoder
from agent.backends.remote.presets import make_backend
from agent.backends.remote.pricing import Price, lookup_price, price_table
from agent.backends.remote.reasoning_forms import (
    INLINE,
    THINKING,
    ReasoningMemory,
    inline_prefix,
    items_for,
    merge_detail_increments,
)
from agent.backends.remote.retry import RetryableError, RetryPolicy, parse_retry_after
from agent.backends.remote.sse import MalformedChunk, SseEvent, iter_sse, json_payloads
from tests.remote.loop import TOOLS
from tests.remote.scripts import THREE_ROUNDS
from tests.remote.servers import Fault


def test_sse_framing_comments_multiline_data_and_unfinished_events():
    lines = [
        ": keep-alive",
        "event: message_start",
        'data: {"a":',
        "data: 1}",
        "",
        "data:[DONE]",
        "",
        "data: cut",
    ]
    assert list(iter_sse(lines)) == [SseEvent("message_start", '{"a":\n1}'), SseEvent("message", "[DONE]")]


def test_json_payloads_tolerate_a_missing_blank_line_and_reject_garbage():
    assert json_payloads('{"a": 1}\n{"b": 2}') == [{"a": 1}, {"b": 2}]
    with pytest.raises(MalformedChunk):
        json_payloads('{"a": 1')


def test_retry_after_as_seconds_millis_or_date_and_the_backoff():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, max_retry_after=60.0, jitter=0.5)
    assert all(0.5 <= policy.delay(1) <= 1.0 for _ in range(50))
    assert all(2.5 <= policy.delay(9) <= 5.0 for _ in range(50))
    assert policy.delay(1, retry_after=7.0) == 7.0 and policy.delay(1, retry_after=600.0) == 60.0


def test_reasoning_details_increments_merge_by_index():
    items: list = []
    head = {"type": "reasoning.text", "id": "r1", "format": "MiniMax-response-v1", "index": 0}
    assert merge_detail_increments(items, [{**head, "text": "The us"}]) == "The us"
    assert merge_detail_increments(items, [{"index": 0, "text": "er asks"}]) == "er asks"
    merge_detail_increments(items, [{"type": "reasoning.text", "index": 1, "text": "!"}])
    assert items == [{**head, "text": "The user asks"}, {"type": "reasoning.text", "index": 1, "text": "!"}]


def test_inline_prefix_keeps_the_exact_head_of_the_content():
    assert inline_prefix("<think>r\n</think>\n\nHello") == "<think>r\n</think>\n\n"
    assert inline_prefix("<think>\nr\n</think>\n\n\n<minimax:tool_call>") == "<think>\nr\n</think>\n\n"
    assert inline_prefix("no reasoning here") is None


def test_items_are_used_only_while_they_match_the_reasoning():
    memory = ReasoningMemory()
    block = {"type": "thinking", "thinking": "plan", "signature": "sig"}
    memory.remember("plan", [block])
    assert items_for(Message.assistant("", reasoning="plan"), THINKING, memory) == [block]
    # A loop that compacted the reasoning gets no stale signature.
    assert items_for(Message.assistant("", reasoning="pl"), THINKING, memory) is None
    # Items of another form are not used for this one.
    inline = Message.assistant("", reasoning="plan", tool_calls=[])
    inline.reasoning_details = [block]
    assert items_for(inline, INLINE, ReasoningMemory()) is None


def test_reasoning_details_round_trip_through_the_session_json():
    message = Message.assistant("hi", reasoning="r", tool_calls=[ToolCall("f", {}, "c1")])
    message.reasoning_details = [{"type": "reasoning.text", "id": "x", "text": "r"}]
    assert messages_from_openai(messages_to_openai([message])) == [message]


def chunk(delta, finish=None):
    return SseEvent(
        "message", json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    )


def test_chat_tool_call_fragments_without_index_and_repeated_names():
    decoder = ChatStreamDecoder(TOOLS)
    events = []
    for delta in (
        {"tool_calls": [{"id": "a", "function": {"name": "add", "arguments": '{"a": '}}]},
        {"tool_calls": [{"function": {"name": "add", "arguments": '1, "b": 2}'}}]},
        {"tool_calls": [{"id": "b", "function": {"name": "read_file", "arguments": '{"path'}}]},
        {"tool_calls": [{"function": {"arguments": '": "x"}'}}]},
    ):
        events += decoder.feed(chunk(delta))
    events += decoder.feed(chunk({}, "tool_calls")) + decoder.finish()
    assert [(e.name, e.arguments, e.id) for e in events if isinstance(e, ToolCallEvent)] == [
        ("add", {"a": 1, "b": 2}, "a"),
        ("read_file", {"path": "x"}, "b"),
    ]
    assert decoder.stop_reason == "tool_calls"


def test_chat_bad_arguments_become_a_message_for_the_model():
    decoder = ChatStreamDecoder(TOOLS)
    decoder.feed(
        chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "add", "arguments": "{a: 1"}}]})
    )
    (error,) = decoder.finish()
    assert isinstance(error, FormatError) and "not valid JSON" in error.message and "add" in error.message


DEEP_ARGUMENTS = '{"a": ' + "[" * 30_000 + "]" * 30_000 + "}"  # json.loads: RecursionError


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (DEEP_ARGUMENTS, "nests deeper than 64 levels"),
        ('{"a": ' + "[" * 100 + "]" * 100 + "}", "nests deeper than 64 levels"),
        ('{"path": "\\ud800"}', "holds a lone surrogate"),
    ],
)
def test_chat_and_anthropic_arguments_too_deep_or_not_text_are_not_run(arguments, reason):
    chat = ChatStreamDecoder(TOOLS)
    chat.feed(
        chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "add", "arguments": arguments}}]})
    )
    anthropic = AnthropicDecoder()
    block = {"type": "tool_use", "id": "t", "name": "add", "input": {}}
    anthropic.feed(SseEvent("content_block_start", json.dumps({"index": 0, "content_block": block})))
    delta = {"type": "input_json_delta", "partial_json": arguments}
    anthropic.feed(SseEvent("content_block_delta", json.dumps({"index": 0, "delta": delta})))
    events = chat.finish() + anthropic.feed(SseEvent("content_block_stop", json.dumps({"index": 0})))
    assert [type(e) for e in events] == [FormatError, FormatError]
    assert all(reason in e.message and "not run" in e.message for e in events)


def test_chat_without_a_think_prefix_is_plain_content_and_a_split_tag_waits():
    decoder = ChatStreamDecoder(TOOLS)
    assert decoder.feed(chunk({"content": "<th"})) == []  # may still become <think>
    events = decoder.feed(chunk({"content": "ink>plan\n</think>\n\nHi"})) + decoder.finish()
    assert [type(e) for e in events] == [ReasoningDelta, TextDelta]
    plain = ChatStreamDecoder(TOOLS)
    assert [e.text for e in plain.feed(chunk({"content": "Hello <b>"})) + plain.finish()] == ["Hello <b>"]


def test_minimax_errors_inside_a_200_reply():
    decoder = ChatStreamDecoder(TOOLS)
    with pytest.raises(RetryableError):
        decoder.feed(
            SseEvent("message", json.dumps({"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}))
        )
    with pytest.raises(EndpointError) as info:
        decoder.feed(
            SseEvent("message", json.dumps({"base_resp": {"status_code": 1004, "status_msg": "auth"}}))
        )
    assert info.value.auth
    assert (
        decoder.feed(SseEvent("message", json.dumps({"choices": [], "base_resp": {"status_code": 0}}))) == []
    )


def test_anthropic_decoder_keeps_redacted_thinking_and_rejects_unknown_blocks():
    decoder = AnthropicDecoder()
    decoder.feed(
        SseEvent(
            "content_block_start",
            json.dumps({"index": 0, "content_block": {"type": "redacted_thinking", "data": "xyz"}}),
        )
    )
    assert decoder.reasoning_items() == [{"type": "redacted_thinking", "data": "xyz"}]
    with pytest.raises(MalformedChunk):
        decoder.feed(
            SseEvent(
                "content_block_delta", json.dumps({"index": 5, "delta": {"type": "text_delta", "text": "x"}})
            )
        )


def test_prices_defaults_overrides_and_unknown_models():
    table = price_table({"MiniMax-M2": {"input": 1, "output": 2}, "mine": Price(0, 0), "MiniMax-M2.1": None})
    assert lookup_price(table, "minimax-m2") == Price(1.0, 2.0)
    assert lookup_price(table, "MiniMax-M2.1") is None and lookup_price(table, "gpt-x") is None
    assert Price(0.30, 1.20, 0.03).cost(1_000_000, 1_000_000, cached_tokens=500_000) == pytest.approx(1.365)
    with pytest.raises(ValueError, match="price for 'bad'"):
        price_table({"bad": {"input": 1}})


def test_scrub_hides_the_key_and_its_long_fragments():
    key = ApiKey("sk-live-0123456789abcdefghij", "K")
    text = "bad key sk-live-0123456789abcdefghij, known as sk-live-01234567...ghij"
    assert "0123456789" not in scrub(text, key) and repr(key) == "ApiKey(env='K')"


def test_make_backend_validates_kind_options_url_and_key(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'x'"):
        make_backend("x")
    with pytest.raises(ValueError, match="unknown option.*reasoning_split"):
        make_backend("anthropic-compatible", reasoning_split=True)
    with pytest.raises(ValueError, match="http:// or https://"):
        make_backend("completions", "localhost:8000/v1")
    monkeypatch.delenv("MINIMAX_API_KEY", raising=False)
    with pytest.raises(BackendError, match="MINIMAX_API_KEY is not set"):
        make_backend("minimax")
    monkeypatch.setenv("MY_KEY", "k-123")
    backend = make_backend(
        "minimax", None, "MiniMax-M2.7", "MY_KEY", read_timeout=5, max_attempts=2, top_k=None
    )
    assert backend.base_url == "https://api.minimax.io/v1" and backend.context_window == 204_800
    assert backend.timeouts.read == 5 and backend.retry.max_attempts == 2 and "k-123" not in repr(backend)


def test_a_server_that_ignores_stream_true_is_understood(serve, backend_for):
    """Some gateways answer with one JSON body; it is decoded like the stream would have been."""
    server = serve("split", THREE_ROUNDS)
    body = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi",
                    "reasoning_content": "plan",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3},
    }
    server.faults = [Fault(status=200, body=body)]
    events = list(backend_for(server, model="m").stream([Message.user("hi")], TOOLS, GenerationParams()))
    assert [e.type for e in events] == ["reasoning_delta", "text_delta", "parsed_tool_call", "usage", "end"]
    assert events[2].arguments == {"a": 1, "b": 2} and events[3].input_tokens == 5


def test_no_model_and_no_model_list_is_a_clear_error(serve, backend_for):
    server = serve("split", THREE_ROUNDS, model="")  # /v1/models lists no usable model
    backend = backend_for(server)
    with pytest.raises(BackendError, match="pass --model"):
        list(backend.stream([Message.user("hi")], TOOLS, GenerationParams()))
    assert server.generation_requests() == []
