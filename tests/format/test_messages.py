"""The message model and its OpenAI chat JSON form."""

import pytest

from agent.backends.messages import (
    Message,
    MessageFormatError,
    ToolCall,
    messages_from_openai,
    messages_to_openai,
    tools_from_openai,
)


def test_openai_round_trip_keeps_reasoning_calls_and_extras():
    messages = [
        Message.system("sys", current_date="2026-11-29", current_location="Paris"),
        Message.user([{"type": "text", "text": "hi"}]),
        Message.assistant(
            "", reasoning="think", tool_calls=[ToolCall("bash", {"command": "ls", "n": [1]}, id="c1")]
        ),
        Message.tool("out", tool_call_id="c1", name="bash"),
    ]
    assert messages_from_openai(messages_to_openai(messages)) == messages


def test_arguments_as_object_or_json_string_and_null_content():
    a, b = messages_from_openai(
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "f", "arguments": '{"x": 1}'}}],
            },
            {
                "role": "assistant",
                "reasoning_content": "r",
                "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
            },
        ]
    )
    assert a.content == "" and a.tool_calls == b.tool_calls == [ToolCall("f", {"x": 1})]
    assert b.reasoning == "r"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"role": "bot"}, "role must be one of"),
        ({"role": "user", "content": 3}, "content must be a string or a list"),
        (
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]},
            "not valid JSON",
        ),
        ({"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}, "missing function name"),
        (
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]},
            "must be a JSON object",
        ),
    ],
)
def test_bad_messages_say_which_field(data, message):
    with pytest.raises(MessageFormatError, match=message):
        messages_from_openai([{"role": "user", "content": "ok"}, data])


def test_tools_accept_the_bare_function_form():
    assert tools_from_openai([{"name": "f", "parameters": {}}]) == [
        {"type": "function", "function": {"name": "f", "parameters": {}}}
    ]
    with pytest.raises(MessageFormatError):
        tools_from_openai({"name": "f"})
