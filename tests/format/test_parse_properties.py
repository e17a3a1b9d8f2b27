"""Properties of the parser: never raises, chunking-invariant, and render -> parse round-trips."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.backends.events import FormatError, ReasoningDelta, StreamEnd, TextDelta, ToolCallEvent
from agent.backends.m2.parse import CompletionParser, parse_completion
from agent.backends.m2.render import render_prompt
from agent.backends.messages import Message, ToolCall
from tests.format.conversations import TOOLS

FRAGMENTS = [
    "<think>",
    "</think>",
    "<minimax:tool_call>",
    "</minimax:tool_call>",
    "minimax:tool_call>",
    '<invoke name="read_file">',
    '<invoke name="nope">',
    'invoke name="edit_file">',
    "</invoke>",
    "/invoke>",
    '<parameter name="path">',
    '<parameter name="offset">',
    'parameter name="new">',
    "</parameter>",
    "/parameter>",
    "[e~[",
    "<tool_calls>",
    "</tool_calls>",
    '{"name": "noargs", "arguments": {}}',
    "\n",
    "\n\n",
    " ",
    "<",
    ">",
    "/",
    "[",
    "e~",
    "a.py",
    "12",
    "null",
    "true",
    "text",
    "数据",
    "🚀",
    "\x00",
]

completions = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40).map("".join)


def run(text, chunk_sizes, dialect="m2", tools=TOOLS):
    parser = CompletionParser(tools, dialect=dialect)
    events, i, k = [], 0, 0
    while i < len(text):
        size = chunk_sizes[k % len(chunk_sizes)] if chunk_sizes else len(text)
        events += parser.feed(text[i : i + size])
        i, k = i + size, k + 1
    return events + parser.finish()


def merged(events):
    """Adjacent deltas of one kind joined: what the stream means, independent of chunk boundaries."""
    out = []
    for event in events:
        if isinstance(event, ReasoningDelta | TextDelta) and out and type(out[-1]) is type(event):
            out[-1] = type(event)(out[-1].text + event.text)
        else:
            out.append(event)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completions, st.lists(st.integers(1, 12), min_size=1, max_size=8), st.sampled_from(["m2", "m1"]))
def test_events_do_not_depend_on_chunking_and_nothing_raises(text, chunk_sizes, dialect):
    whole = run(text, [], dialect)
    assert merged(run(text, chunk_sizes, dialect)) == merged(whole)
    assert merged(run(text, [1], dialect)) == merged(whole)
    assert isinstance(whole[-1], StreamEnd)
    assert not any(isinstance(e, FormatError) and "internal parser error" in e.message for e in whole)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.one_of(st.none(), st.just([{"bad": "tools"}]), st.just(TOOLS)))
def test_arbitrary_text_and_tool_lists_never_raise(text, tools):
    for dialect in ("m2", "m1"):
        result = parse_completion(text, tools, dialect=dialect)
        assert not any("internal parser error" in e for e in result.errors)


def clean_text(s: str) -> bool:
    banned = ("<think>", "</think>", "minimax:tool_call>", "[e~[", "invoke", "parameter")
    return not any(b in s for b in banned)


plain = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30).filter(clean_text)
edge_trimmed = plain.filter(lambda s: not s.startswith("\n") and not s.endswith("\n"))
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False),
    plain,
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(plain, inner, max_size=3)),
    max_leaves=8,
)

read_file_args = st.fixed_dictionaries(
    {"path": edge_trimmed}, optional={"offset": st.integers(0, 10**6), "limit": st.integers(0, 100)}
)
edit_file_args = st.fixed_dictionaries(
    {"path": edge_trimmed, "old": edge_trimmed, "new": edge_trimmed}, optional={"replace_all": st.booleans()}
)
configure_args = st.fixed_dictionaries(
    {},
    optional={
        "options": st.dictionaries(plain, json_value, max_size=3),
        "items": st.lists(plain, max_size=3),
        "ratio": st.floats(allow_nan=False, allow_infinity=False),
        "note": st.one_of(st.none(), edge_trimmed.filter(lambda s: s.strip() != "null")),
    },
)
calls = st.one_of(
    read_file_args.map(lambda a: ToolCall("read_file", a)),
    edit_file_args.map(lambda a: ToolCall("edit_file", a)),
    configure_args.map(lambda a: ToolCall("configure", a)),
    st.just(ToolCall("noargs", {})),
)


def same_value(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b and type(a) is type(b)


@settings(max_examples=300, deadline=None)
@given(
    edge_trimmed.filter(lambda s: s.strip() != ""),
    edge_trimmed,
    st.lists(calls, max_size=3),
    st.lists(st.integers(1, 9), min_size=1, max_size=5),
)
def test_render_then_parse_returns_the_same_assistant_turn(reasoning, content, tool_calls, chunk_sizes):
    turn = Message.assistant(content, reasoning=reasoning, tool_calls=tool_calls)
    prompt = render_prompt([Message.user("go"), turn], TOOLS, add_generation_prompt=False)
    completion = prompt.split("]~b]ai\n<think>\n", 1)[1]  # what the model wrote after the generation prompt
    events = merged(run(completion, chunk_sizes))
    got_reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    got_content = "".join(e.text for e in events if isinstance(e, TextDelta))
    got_calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert got_reasoning == reasoning.strip("\n")
    assert got_content == content
    assert [c.name for c in got_calls] == [c.name for c in tool_calls]
    for got, want in zip(got_calls, tool_calls, strict=True):
        assert got.arguments.keys() == want.arguments.keys()
        for key, value in want.arguments.items():
            assert same_value(got.arguments[key], value), (key, got.arguments[key], value)
    assert not any(isinstance(e, FormatError) for e in events)
