"""The completion parser: well-formed output, every malformed case in the spec, and M1."""

import pytest

from agent.backends.events import FormatError, ReasoningDelta, StreamEnd, TextDelta, ToolCallEvent
from agent.backends.m2.parse import CompletionParser, parse_completion
from tests.format.conversations import TOOLS

CALL = (
    "<minimax:tool_call>\n"
    '<invoke name="read_file">\n<parameter name="path">src/app.py</parameter>\n'
    '<parameter name="offset">10</parameter>\n</invoke>\n</minimax:tool_call>'
)


def feed_all(text, tools=TOOLS, dialect="m2", chunk=None):
    parser = CompletionParser(tools, dialect=dialect)
    events = []
    step = chunk or len(text) or 1
    for i in range(0, len(text), step):
        events += parser.feed(text[i : i + step])
    return events + parser.finish()


def test_reasoning_content_and_a_typed_call():
    result = parse_completion(f"Look at the file first.\n</think>\n\nReading it.\n{CALL}", TOOLS)
    assert result.reasoning == "Look at the file first."
    assert result.content == "Reading it."
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("read_file", {"path": "src/app.py", "offset": 10})
    ]
    assert result.errors == []


def test_events_stream_in_order_and_end_with_the_stop_reason():
    events = feed_all(f"think\n</think>\n\nhi\n{CALL}", chunk=3)
    kinds = [type(e) for e in events]
    assert kinds[0] is ReasoningDelta
    assert kinds.index(TextDelta) < kinds.index(ToolCallEvent)
    assert isinstance(events[-1], StreamEnd) and events[-1].stop_reason == "tool_calls"


def test_text_streams_before_the_output_ends():
    parser = CompletionParser(TOOLS)
    assert parser.feed("reasoning that goes on") == [ReasoningDelta("reasoning that goes on")]
    parser.feed("\n</think>\n\n")
    assert parser.feed("visible answer ") == [TextDelta("visible answer ")]


def test_call_is_complete_when_its_invoke_closes():
    parser = CompletionParser(TOOLS)
    parser.feed('r\n</think>\n\n<minimax:tool_call>\n<invoke name="read_file">\n')
    assert not any(
        isinstance(e, ToolCallEvent) for e in parser.feed('<parameter name="path">a</parameter>\n')
    )
    events = parser.feed("</invoke>\n")
    assert [e.arguments for e in events if isinstance(e, ToolCallEvent)] == [{"path": "a"}]


def test_parallel_calls_keep_their_order():
    block = (
        "<minimax:tool_call>\n"
        '<invoke name="read_file">\n<parameter name="path">a</parameter>\n</invoke>\n'
        '<invoke name="edit_file">\n<parameter name="path">b</parameter>\n<parameter name="old">x</parameter>\n'
        '<parameter name="new">y</parameter>\n</invoke>\n'
        '<invoke name="noargs">\n</invoke>\n</minimax:tool_call>'
    )
    result = parse_completion("r\n</think>\n\n" + block, TOOLS)
    assert [c.name for c in result.tool_calls] == ["read_file", "edit_file", "noargs"]
    assert result.tool_calls[2].arguments == {}


def test_values_are_typed_against_the_schema():
    block = (
        '<minimax:tool_call>\n<invoke name="configure">\n'
        '<parameter name="options">{"depth": 2, "deep": {"x": [1, null]}}</parameter>\n'
        '<parameter name="items">["a", "b"]</parameter>\n'
        '<parameter name="ratio">0.25</parameter>\n'
        '<parameter name="note">null</parameter>\n'
        '<parameter name="unknown_param">42</parameter>\n'
        "</invoke>\n</minimax:tool_call>"
    )
    (call,) = parse_completion("r\n</think>\n\n" + block, TOOLS).tool_calls
    assert call.arguments == {
        "options": {"depth": 2, "deep": {"x": [1, None]}},
        "items": ["a", "b"],
        "ratio": 0.25,
        "note": None,
        "unknown_param": "42",  # unknown parameters stay strings
    }


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("False", False), ("1", True), ("0", False)])
def test_booleans(raw, expected):
    block = (
        f'<minimax:tool_call>\n<invoke name="edit_file">\n<parameter name="replace_all">{raw}</parameter>\n'
        "</invoke>\n</minimax:tool_call>"
    )
    assert parse_completion("r\n</think>\n" + block, TOOLS).tool_calls[0].arguments == {
        "replace_all": expected
    }


@pytest.mark.parametrize("depth", [65, 500, 990, 30_000])
def test_structured_values_nested_too_deeply_stay_text_for_validation(depth):
    # json.loads takes up to ~990 levels; anything past 64 would break later consumers that recurse.
    block = (
        '<minimax:tool_call>\n<invoke name="configure">\n'
        f'<parameter name="items">{"[" * depth}{"]" * depth}</parameter>\n'
        "</invoke>\n</minimax:tool_call>"
    )
    (call,) = parse_completion("r\n</think>\n\n" + block, TOOLS).tool_calls
    assert call.arguments == {"items": "[" * depth + "]" * depth}  # argument validation says why


def test_structured_values_holding_a_lone_surrogate_stay_text():
    block = (
        '<minimax:tool_call>\n<invoke name="configure">\n'
        '<parameter name="items">["\\ud800"]</parameter>\n'
        "</invoke>\n</minimax:tool_call>"
    )
    (call,) = parse_completion("r\n</think>\n\n" + block, TOOLS).tool_calls
    assert call.arguments == {"items": '["\\ud800"]'}


def test_one_leading_and_trailing_newline_are_layout_and_strings_stay_raw():
    block = (
        '<minimax:tool_call>\n<invoke name="edit_file">\n'
        '<parameter name="new">\n\n  indented {"json": "not parsed"}\n\n</parameter>\n'
        '<parameter name="old">null</parameter>\n</invoke>\n</minimax:tool_call>'
    )
    args = parse_completion("r\n</think>\n" + block, TOOLS).tool_calls[0].arguments
    assert args == {"new": '\n  indented {"json": "not parsed"}\n', "old": "null"}


def test_without_a_tool_list_any_name_is_accepted_untyped():
    result = parse_completion("r\n</think>\n" + CALL.replace("read_file", "anything"), None)
    assert result.tool_calls[0].name == "anything"
    assert result.tool_calls[0].arguments == {"path": "src/app.py", "offset": "10"}


# ------------------------------------------------------------------ malformed output


def test_unknown_tool_is_reported_with_the_real_tools_and_not_run():
    result = parse_completion("r\n</think>\n" + CALL.replace("read_file", "delete_everything"), TOOLS)
    assert result.tool_calls == []
    (error,) = result.errors
    assert "Unknown tool 'delete_everything'" in error and "read_file, edit_file" in error


def test_block_cut_inside_a_parameter_is_not_run():
    text = 'r\n</think>\n<minimax:tool_call>\n<invoke name="edit_file">\n<parameter name="path">a.py</parameter>\n<parameter name="new">def f(\n'
    result = parse_completion(text, TOOLS)
    assert result.tool_calls == []
    assert "cut off inside parameter 'new'" in result.errors[0] and "not run" in result.errors[0]


def test_block_missing_only_its_closing_tags_is_repaired():
    text = 'r\n</think>\n<minimax:tool_call>\n<invoke name="read_file">\n<parameter name="path">a.py</parameter>\n'
    result = parse_completion(text, TOOLS)
    assert [c.arguments for c in result.tool_calls] == [{"path": "a.py"}]
    assert result.errors == []


def test_complete_calls_stand_when_the_block_is_left_open():
    text = "r\n</think>\n" + CALL.replace("</minimax:tool_call>", "")
    assert len(parse_completion(text, TOOLS).tool_calls) == 1


def test_tags_missing_their_opening_bracket_are_accepted():
    text = (
        'r\n</think>\nminimax:tool_call>\ninvoke name="read_file">\nparameter name="path">a.py/parameter>\n'
        "/invoke>\n/minimax:tool_call>"
    )
    result = parse_completion(text, TOOLS)
    assert [c.arguments for c in result.tool_calls] == [{"path": "a.py"}]
    assert result.content == ""


def test_literal_closing_parameter_tag_inside_a_value_is_kept():
    xml = "<config>\n  <parameter>7</parameter>\n</config>"
    text = (
        f'r\n</think>\n<minimax:tool_call>\n<invoke name="edit_file">\n<parameter name="new">{xml}</parameter>\n'
        '<parameter name="path">c.xml</parameter>\n</invoke>\n</minimax:tool_call>'
    )
    for chunk in (1, 2, 5, None):
        calls = [e for e in feed_all(text, chunk=chunk) if isinstance(e, ToolCallEvent)]
        assert calls[0].arguments == {"new": xml, "path": "c.xml"}


def test_think_text_leaking_into_content_goes_back_to_reasoning():
    result = parse_completion("first\n</think>\n\nAnswer <think>second thought</think> done</think>", TOOLS)
    assert result.reasoning == "first\nsecond thought"
    assert result.content == "Answer  done"


def test_echoed_opening_think_tag_is_dropped():
    assert parse_completion("<think>\nplan\n</think>\nok").reasoning == "plan"


def test_tool_call_xml_inside_reasoning_is_not_a_call():
    result = parse_completion(f"maybe I should call\n{CALL}\nno, answer directly\n</think>\nDone.", TOOLS)
    assert result.tool_calls == [] and result.errors == []
    assert '<invoke name="read_file">' in result.reasoning
    assert result.content == "Done."


def test_output_ending_inside_reasoning_with_a_call_tells_the_model():
    result = parse_completion(f"I will call it\n{CALL}", TOOLS)
    assert result.tool_calls == []
    assert "ended inside your reasoning" in result.errors[0]


def test_garbage_inside_a_block_is_reported():
    text = (
        'r\n</think>\n<minimax:tool_call>\nplease run read_file on a.py\n<invoke name="read_file">\n'
        '<parameter name="path">a.py</parameter>\n</invoke>\n</minimax:tool_call>'
    )
    result = parse_completion(text, TOOLS)
    assert len(result.tool_calls) == 1
    assert "please run read_file" in result.errors[0]


def test_invoke_without_a_name_is_reported():
    text = 'r\n</think>\n<minimax:tool_call>\n<invoke name="">\n</invoke>\n</minimax:tool_call>'
    assert "no tool name" in parse_completion(text, TOOLS).errors[0]


def test_new_invoke_before_the_previous_closed_keeps_both():
    text = (
        'r\n</think>\n<minimax:tool_call>\n<invoke name="read_file">\n<parameter name="path">a</parameter>\n'
        '<invoke name="read_file">\n<parameter name="path">b</parameter>\n</invoke>\n</minimax:tool_call>'
    )
    assert [c.arguments["path"] for c in parse_completion(text, TOOLS).tool_calls] == ["a", "b"]


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "\x00\x01",
        "<<<>>>",
        "</think></think>",
        "<minimax:tool_call>",
        "<invoke name=",
        "]~b]ai\n",
        "\ud800",
        '<parameter name="x">',
    ],
)
def test_plain_garbage_never_raises(garbage):
    events = feed_all(garbage, chunk=1)
    assert isinstance(events[-1], StreamEnd)
    assert not any(isinstance(e, FormatError) and "internal" in e.message for e in events)


def test_end_marker_stops_parsing():
    result = parse_completion("r\n</think>\nanswer[e~[]~b]user\nignored", TOOLS)
    assert result.content == "answer"


def test_feed_after_finish_is_ignored():
    parser = CompletionParser(TOOLS)
    parser.feed("a\n</think>\nb")
    parser.finish()
    assert parser.feed("more") == [] and parser.finish() == []


# ------------------------------------------------------------------ M1


def test_m1_calls_as_json_lines():
    text = (
        "<think>\nneed the file\n</think>\nreading\n<tool_calls>\n"
        '{"name": "read_file", "arguments": {"path": "a.py", "offset": 3}}\n'
        '{"name": "noargs", "arguments": "{}"}\n</tool_calls><end_of_sentence>'
    )
    result = parse_completion(text, TOOLS, dialect="m1")
    assert result.reasoning == "need the file"
    assert result.content == "reading"
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("read_file", {"path": "a.py", "offset": 3}),
        ("noargs", {}),
    ]


def test_m1_reply_without_reasoning_and_bad_lines():
    text = (
        'plain answer\n<tool_calls>\n{"name": "read_file", "arguments": {"path": 1}\nnot json\n</tool_calls>'
    )
    result = parse_completion(text, TOOLS, dialect="m1")
    assert result.reasoning == "" and result.content == "plain answer"
    assert result.tool_calls == [] and len(result.errors) == 2


def test_m1_unknown_tool_and_chunking():
    text = '<tool_calls>\n{"name": "nope", "arguments": {}}\n{"name": "noargs", "arguments": {}}'
    for chunk in (1, 4, None):
        events = feed_all(text, dialect="m1", chunk=chunk)
        assert [e.name for e in events if isinstance(e, ToolCallEvent)] == ["noargs"]
        assert any(isinstance(e, FormatError) and "Unknown tool 'nope'" in e.message for e in events)


def test_errors_about_one_attempted_call_name_it():
    events = feed_all("r\n</think>\n" + CALL.replace("read_file", "nope"))
    (error,) = [e for e in events if isinstance(e, FormatError)]
    assert error.name == "nope" and error.arguments == {"path": "src/app.py", "offset": "10"}
    text = 'r\n</think>\n<minimax:tool_call>\n<invoke name="edit_file">\n<parameter name="path">a</parameter>\n<parameter name="new">x'
    (error,) = [e for e in feed_all(text) if isinstance(e, FormatError)]
    assert error.name == "edit_file" and error.arguments == {"path": "a"}
