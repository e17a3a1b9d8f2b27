"""Our renderer against the official templates: zero byte differences on generated conversations."""

import copy
import hashlib
import random

import pytest

from agent.backends.m2.render import RenderError, render_prompt
from tests.format.conversations import m1_conversation, m2_conversation
from tests.format.oracle import FIXTURES, TemplateRejected, render_official

SEEDS = range(300)


def _first_difference(a: str, b: str) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"first difference at {i}: ours={a[i - 40 : i + 40]!r} official={b[i - 40 : i + 40]!r}"


ORACLE_SHA256 = {
    "chat_template.jinja": "967ff7e387676f4b4340585da0585416532f1e6c5ee3f1ede64b2c21ef7ea001",
    "chat_template_m1.jinja": "e1790d8fbe1c587e6fc385e2a712363f86faf52ae1fb1fcbfc5ded3eb1fae70a",
}


@pytest.mark.parametrize("name", sorted(ORACLE_SHA256))
def test_oracle_templates_are_the_upstream_files(name):
    # An edited oracle would make the byte-for-byte comparison below prove nothing.
    assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == ORACLE_SHA256[name]


@pytest.mark.parametrize("seed", SEEDS)
def test_m2_renderer_matches_official_template(seed):
    messages, tools, add_generation_prompt = m2_conversation(random.Random(seed))
    expected = render_official(copy.deepcopy(messages), tools, add_generation_prompt=add_generation_prompt)
    ours = render_prompt(messages, tools, add_generation_prompt=add_generation_prompt)
    assert ours == expected, _first_difference(ours, expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_m1_renderer_matches_official_template(seed):
    messages, tools, add_generation_prompt = m1_conversation(random.Random(seed))
    expected = render_official(
        copy.deepcopy(messages), tools, dialect="m1", add_generation_prompt=add_generation_prompt
    )
    ours = render_prompt(messages, tools, dialect="m1", add_generation_prompt=add_generation_prompt)
    assert ours == expected, _first_difference(ours, expected)


def test_tool_result_without_a_call_is_rejected_like_the_template():
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "no calls"},
        {"role": "tool", "content": "orphan"},
    ]
    with pytest.raises(TemplateRejected):
        render_official(copy.deepcopy(messages))
    with pytest.raises(RenderError, match="no preceding assistant message carrying a tool call"):
        render_prompt(messages)


def test_tool_result_after_a_call_then_a_user_message_is_accepted_like_the_template():
    call = {"type": "function", "function": {"name": "bash", "arguments": {"command": "ls"}}}
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "user", "content": "b"},
        {"role": "tool", "content": "late result"},
    ]
    assert render_prompt(messages) == render_official(copy.deepcopy(messages))
