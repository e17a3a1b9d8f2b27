"""Every endpoint kind: a three-round tool exchange in which the server receives every earlier
round's reasoning byte for byte, in the form it sent it."""

import json

import pytest

from agent.backends.base import BackendError, GenerationParams
from agent.backends.messages import Message, messages_from_openai, messages_to_openai
from tests.remote.loop import TOOLS, run_exchange
from tests.remote.scripts import THREE_ROUNDS, expected_rounds, observed_rounds

CASES = [
    pytest.param("inline", {}, {}, "inline", id="inline-think"),
    pytest.param("split", {}, {}, "reasoning_content", id="reasoning_content"),
    pytest.param("split", {"reasoning_field": "reasoning"}, {}, "reasoning_content", id="reasoning-field"),
    pytest.param("minimax", {}, {}, "reasoning_details", id="reasoning_details"),
    pytest.param("minimax", {}, {"reasoning_split": False}, "inline", id="minimax-inline"),
    pytest.param("xml", {}, {}, "inline", id="xml-tool-calls-in-content"),
    pytest.param("bare", {}, {}, "inline", id="no-parsers-raw-text"),
    pytest.param("completions", {}, {}, "rendered_prompt", id="raw-completions"),
    pytest.param("anthropic", {}, {}, "thinking_blocks", id="anthropic-thinking"),
]


def assert_reasoning_received(server, mode, request, rounds_before):
    """`request` carries the reasoning of each of its earlier rounds exactly as the server sent it."""
    if mode == "rendered_prompt":
        for k in range(rounds_before):
            assert "]~b]ai\n<think>\n" + server.sent[k] + "[e~[\n" in request["prompt"]
        return
    assistants = [m for m in request["messages"] if m["role"] == "assistant"]
    assert len(assistants) == rounds_before
    for k, turn in enumerate(assistants):
        sent = server.sent[k]
        if mode == "inline":
            assert turn["content"] == sent + THREE_ROUNDS[k].content
        elif mode == "reasoning_content":
            assert turn[server.reasoning_field] == sent
            assert turn["reasoning_content"] == sent  # what the M2 chat template reads
        elif mode == "reasoning_details":
            assert turn["reasoning_details"] == sent
        else:
            assert turn["content"][0] == sent  # the thinking block, signature and all


@pytest.mark.parametrize(("style", "server_options", "backend_options", "mode"), CASES)
def test_three_rounds_send_every_earlier_reasoning_back_byte_for_byte(
    serve, backend_for, style, server_options, backend_options, mode
):
    server = serve(style, THREE_ROUNDS, **server_options)
    backend = backend_for(server, **backend_options)
    transcript = run_exchange(backend, [Message.system("Be brief."), Message.user("Fix src/ü.py.")])

    assert observed_rounds(transcript) == expected_rounds(THREE_ROUNDS)
    assert [r.stop_reason for r in transcript.rounds] == ["tool_calls", "tool_calls", "stop"]
    assert all(not r.errors for r in transcript.rounds)
    assert backend.reasoning_mode == mode
    requests = server.generation_requests()
    assert [server.round_of(r) for r in requests] == [0, 1, 2]
    for request in requests:
        assert_reasoning_received(server, mode, request, server.round_of(request))


@pytest.mark.parametrize("style", ["inline", "minimax", "anthropic", "xml"])
def test_a_resumed_session_sends_the_stored_reasoning_items_exactly(serve, backend_for, style):
    """The loop keeps backend.last_reasoning_details in Message.reasoning_details; a session saved
    as JSON and resumed with a new backend still sends the reasoning back as received."""
    server = serve(style, THREE_ROUNDS)
    first = run_exchange(
        backend_for(server), [Message.user("Fix src/ü.py.")], max_rounds=1, store_details=True
    )
    saved = json.loads(json.dumps(messages_to_openai(first.messages), ensure_ascii=False))
    resumed = run_exchange(backend_for(server), messages_from_openai(saved))

    assert observed_rounds(resumed) == expected_rounds(THREE_ROUNDS)[1:]
    mode = {
        "inline": "inline",
        "xml": "inline",
        "minimax": "reasoning_details",
        "anthropic": "thinking_blocks",
    }[style]
    for request in server.generation_requests():
        assert_reasoning_received(server, mode, request, server.round_of(request))


def test_without_stored_items_a_new_backend_renders_the_canonical_think_block(serve, backend_for):
    server = serve("inline", THREE_ROUNDS)
    first = run_exchange(backend_for(server), [Message.user("Fix src/ü.py.")], max_rounds=1)
    run_exchange(backend_for(server), first.messages)
    resumed_request = server.generation_requests()[1]
    assert (
        resumed_request["messages"][1]["content"]
        == "<think>\n" + THREE_ROUNDS[0].reasoning + "\n</think>\n\n"
    )


def test_unsigned_thinking_is_refused_by_a_strict_anthropic_server(serve, backend_for):
    """Why Message.reasoning_details exists: signatures cannot be made up."""
    server = serve("anthropic", THREE_ROUNDS)
    first = run_exchange(backend_for(server), [Message.user("Fix src/ü.py.")], max_rounds=1)
    with pytest.raises(BackendError, match="Invalid `signature`"):
        run_exchange(backend_for(server), first.messages)


def test_make_backend_follows_the_backend_protocol(serve, backend_for):
    server = serve("split", THREE_ROUNDS)
    backend = backend_for(server)
    assert isinstance(backend.name, str) and backend.name == "openai-compatible"
    assert isinstance(backend.context_window, int) and backend.context_window == 196_608
    stream = backend.stream([Message.user("Fix src/ü.py.")], TOOLS, GenerationParams())
    assert iter(stream) is stream  # a generator: nothing happens until it is iterated
    assert server.received == []
    events = list(stream)
    assert backend.model == "MiniMax-M2"  # asked the server, which serves one model
    assert [e.type for e in events][-2:] == ["usage", "end"]
    assert events[-1].stop_reason == "tool_calls"


def test_the_request_carries_m2_sampling_and_the_endpoint_limits(serve, backend_for):
    chat = serve("split", THREE_ROUNDS)
    list(backend_for(chat, model="m").stream([Message.user("hi")], TOOLS, GenerationParams()))
    body = chat.generation_requests()[0]
    assert (body["temperature"], body["top_p"], body["top_k"]) == (1.0, 0.95, 40)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["tools"] == TOOLS

    minimax = serve("minimax", THREE_ROUNDS)
    backend = backend_for(minimax, temperature=1.5)
    list(backend.stream([Message.user("hi")], TOOLS, GenerationParams(max_tokens=100)))
    body = minimax.generation_requests()[0]
    assert body["reasoning_split"] is True and "top_k" not in body
    assert body["temperature"] == 1.0 and body["max_completion_tokens"] == 100

    anthropic = serve("anthropic", THREE_ROUNDS)
    list(
        backend_for(anthropic).stream([Message.user("hi")], TOOLS, GenerationParams(temperature=0.0, top_k=5))
    )
    body = anthropic.generation_requests()[0]
    assert 0 < body["temperature"] <= 1 and body["top_k"] == 5 and body["max_tokens"] > 0
    assert body["tools"][0] == {
        "name": "read_file",
        "input_schema": TOOLS[0]["function"]["parameters"],
        "description": "Read a file.",
    }

    raw = serve("completions", THREE_ROUNDS)
    list(backend_for(raw).stream([Message.user("hi")], TOOLS, GenerationParams(seed=7)))
    body = raw.generation_requests()[0]
    assert body["stop"] == ["[e~["] and body["skip_special_tokens"] is False and body["seed"] == 7
    assert body["prompt"].endswith("]~b]ai\n<think>\n")


def test_usage_and_cost_per_round(serve, backend_for):
    server = serve("minimax", THREE_ROUNDS)
    transcript = run_exchange(
        backend_for(server, prices={"MiniMax-M2": {"input": 1.0, "output": 2.0}}), [Message.user("hi")]
    )
    usage = transcript.rounds[0].usage
    assert usage.input_tokens > 0 and usage.output_tokens > usage.reasoning_tokens > 0
    assert usage.cost_usd == pytest.approx((usage.input_tokens * 1.0 + usage.output_tokens * 2.0) / 1e6)

    other = serve("split", THREE_ROUNDS, model="my-local-m2")
    transcript = run_exchange(backend_for(other), [Message.user("hi")])
    assert transcript.rounds[0].usage.input_tokens > 0 and transcript.rounds[0].usage.cost_usd is None


@pytest.mark.parametrize(("options", "rereads"), [({}, 1), ({"reasoning_mode": "inline"}, 0)])
def test_raw_text_from_a_server_without_parsers_is_read_as_reasoning(serve, backend_for, options, rereads):
    """vLLM without --reasoning-parser sends M2's raw text: the reasoning has no <think> before it.
    Auto mode notices at the first bare </think> and re-reads that round once; later rounds know."""
    server = serve("bare", THREE_ROUNDS)
    transcript = run_exchange(backend_for(server, **options), [Message.user("Fix src/ü.py.")])
    assert observed_rounds(transcript) == expected_rounds(THREE_ROUNDS)
    assert "".join(transcript.shown) == "".join(r.reasoning + r.content for r in THREE_ROUNDS)
    assert len(transcript.retries) == rereads
    assert all("without <think>" in r.reason and r.attempt == 1 for r in transcript.retries)
