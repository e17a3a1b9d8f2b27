"""Seeded generator of conversations that exercise every case the official templates handle."""

from __future__ import annotations

import random
from typing import Any

WORDS = [
    "fix",
    "the",
    "failing",
    "test",
    "in",
    "src/app.py",
    "naïve",
    "café",
    "数据",
    "日本語",
    "emoji 🚀",
    "x = 1",
    '{"a": 1}',
    "<b>bold</b>",
    "tab\there",
    "line\nbreak",
    "back\\slash",
    'quote "q"',
    "",
    "  padded  ",
    "ünïcödé",
    "Ω≈ç√",
    "return None",
    "def f():\n    pass",
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file. Lit un fichier — 读取文件.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "offset": {"type": "integer"},
                    "limit": {"type": "integer"},
                },
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "description": "Replace text in a file.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "old": {"type": "string"},
                    "new": {"type": "string"},
                    "replace_all": {"type": "boolean"},
                },
                "required": ["path", "old", "new"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "configure",
            "description": "Nested options.",
            "parameters": {
                "type": "object",
                "properties": {
                    "options": {"type": "object"},
                    "items": {"type": "array", "items": {"type": "string"}},
                    "ratio": {"type": "number"},
                    "note": {"type": ["string", "null"]},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "noargs", "description": "", "parameters": {"type": "object", "properties": {}}},
    },
]


def text(rng: random.Random, max_words: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, max_words)))


def nonempty_text(rng: random.Random) -> str:
    return text(rng) or "hello"


def content(rng: random.Random) -> Any:
    if rng.random() < 0.2:
        parts: list[Any] = [{"type": "text", "text": text(rng)} for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.3:
            parts.append("a bare string part")
        return parts
    return text(rng)


def argument_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            lambda: text(rng),
            lambda: rng.randint(-5, 10**6),
            lambda: rng.random() * 100,
            lambda: rng.choice([True, False]),
            lambda: None,
            lambda: [text(rng), rng.randint(0, 9)],
            lambda: {"nested": {"k": text(rng), "n": [1, 2, {"deep": None}]}, "ü": "ß"},
            lambda: "",
        ]
    )()


def tool_call(rng: random.Random) -> dict[str, Any]:
    name = rng.choice(["read_file", "edit_file", "configure", "noargs", "bash"])
    args = {
        rng.choice(["path", "old", "new", "options", "x", "参数"]) + str(i): argument_value(rng)
        for i in range(rng.randint(0, 3))
    }
    return {
        "id": f"call_{rng.randint(0, 999)}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    }


def assistant(rng: random.Random, with_calls: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content(rng)}
    style = rng.choice(["separate", "inline", "none", "empty"])
    reasoning = nonempty_text(rng)
    if rng.random() < 0.5:  # newlines at the edges: the inline form strips them, the separate form keeps them
        reasoning = rng.choice(["\n", "\n\n", ""]) + reasoning + rng.choice(["\n", "\n\n", ""])
    if style == "separate":
        message["reasoning_content"] = reasoning
    elif style == "inline" and isinstance(message["content"], str):
        opener = rng.choice(["<think>\n", "<think>", "\n<think>\n"])
        closer = rng.choice(["\n</think>\n\n", "</think>", "\n\n</think>\n"])
        message["content"] = f"{opener}{reasoning}{closer}" + message["content"]
    elif style == "empty":
        message["reasoning_content"] = ""
    if with_calls:
        message["tool_calls"] = [tool_call(rng) for _ in range(rng.randint(1, 3))]
    return message


def tool_result(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.2:
        parts = rng.choice(
            [
                [{"type": "text", "text": text(rng)}],
                [{"output": text(rng)}, "plain string result"],
                [{"type": "text", "text": text(rng)}, {"type": "text", "text": "second"}],
            ]
        )
        return {"role": "tool", "content": parts}
    return {"role": "tool", "tool_call_id": "call_1", "content": text(rng)}


def m2_conversation(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, bool]:
    messages: list[dict[str, Any]] = []
    system_style = rng.choice(["none", "text", "parts", "empty", "dated"])
    if system_style == "text":
        messages.append({"role": "system", "content": nonempty_text(rng)})
    elif system_style == "parts":
        messages.append({"role": "system", "content": [{"type": "text", "text": nonempty_text(rng)}]})
    elif system_style == "empty":
        messages.append({"role": "system", "content": ""})
    elif system_style == "dated":
        system: dict[str, Any] = {"role": "system", "content": rng.choice(["", nonempty_text(rng)])}
        if rng.random() < 0.8:
            system["current_date"] = "2026-11-29"
        if rng.random() < 0.6:
            system["current_location"] = "Zürich, Schweiz"
        messages.append(system)
    for _ in range(rng.randint(1, 3)):  # user turns
        messages.append({"role": "user", "content": content(rng)})
        for _ in range(rng.randint(0, 3)):  # tool rounds within the turn
            if rng.random() < 0.75:
                messages.append(assistant(rng, with_calls=True))
                calls = len(messages[-1]["tool_calls"])
                messages.extend(tool_result(rng) for _ in range(rng.randint(1, calls)))
            else:
                messages.append(assistant(rng, with_calls=False))
        if rng.random() < 0.6:
            messages.append(assistant(rng, with_calls=False))
        if rng.random() < 0.05:
            messages.append({"role": "system", "content": "a late system message is dropped"})
    tools = None if rng.random() < 0.3 else rng.sample(TOOLS, rng.randint(0, len(TOOLS)))
    return messages, tools, rng.random() < 0.7


def m1_conversation(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, bool]:
    messages: list[dict[str, Any]] = []
    system_style = rng.choice(["none", "text", "parts", "empty", "padded"])
    if system_style == "text":
        messages.append({"role": "system", "content": nonempty_text(rng)})
    elif system_style == "parts":
        messages.append({"role": "system", "content": [{"type": "text", "text": nonempty_text(rng)}]})
    elif system_style == "empty":
        messages.append({"role": "system", "content": ""})
    elif system_style == "padded":
        messages.append({"role": "system", "content": "\n  spaced system  \n"})
    for _ in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": content(rng)})
        for _ in range(rng.randint(0, 2)):
            call_message = {
                "role": "assistant",
                "content": text(rng),
                "tool_calls": [tool_call(rng) for _ in range(rng.randint(1, 2))],
            }
            messages.append(call_message)
            for _ in range(rng.randint(1, 2)):
                if rng.random() < 0.3:
                    messages.append(
                        {
                            "role": "tool",
                            "content": [
                                {"type": "text", "text": text(rng)},
                                {"name": "read_file", "text": text(rng)},
                            ],
                        }
                    )
                else:
                    messages.append({"role": "tool", "content": text(rng)})
        answer = rng.choice([text(rng), "<think>\nhm\n</think>\nanswer", [{"type": "text", "text": " x "}]])
        messages.append({"role": "assistant", "content": answer})
    tools = None if rng.random() < 0.4 else rng.sample(TOOLS, rng.randint(0, len(TOOLS)))
    return messages, tools, rng.random() < 0.7
