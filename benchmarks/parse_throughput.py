"""Streaming parse throughput (MB/s) over a long, realistic M2 completion fed in token-sized chunks.

The completion has long reasoning, visible text and many tool calls with large values (whole files),
as an agent writing code produces. Peer, measured in the same run: one regex pass over the whole
finished text (no streaming, no repair, no typing): the cost floor of finding the same calls.

    python benchmarks/parse_throughput.py [--calls 60] [--file-kb 24] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import re
import time

from agent.backends.events import ToolCallEvent
from agent.backends.m2.parse import CompletionParser

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "old": {"type": "string"},
                    "new": {"type": "string"},
                    "replace_all": {"type": "boolean"},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "bash",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
            },
        },
    },
]

WORDS = [
    "the",
    "function",
    "returns",
    "self",
    "value",
    "if",
    "not",
    "None",
    "else",
    "raise",
    "ValueError",
    "for",
    "each",
    "item",
    "in",
    "config",
    "parser",
    "test",
    "fixture",
    "数据",
    "naïve",
    "<tag>",
    "a<b",
    "&&",
    "c>d",
]


def source_file(rng: random.Random, size: int) -> str:
    lines, total = [], 0
    while total < size:
        indent = "    " * rng.randint(0, 3)
        line = indent + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)


def completion(rng: random.Random, calls: int, file_kb: int) -> str:
    parts = [
        " ".join(rng.choice(WORDS) for _ in range(6000)),
        "\n</think>\n\nI will write the files now.\n",
        "<minimax:tool_call>\n",
    ]
    for i in range(calls):
        kind = i % 3
        if kind == 0:
            parts.append(
                f'<invoke name="write_file">\n<parameter name="path">src/mod_{i}.py</parameter>\n'
                f'<parameter name="content">{source_file(rng, file_kb * 1024)}</parameter>\n</invoke>\n'
            )
        elif kind == 1:
            parts.append(
                f'<invoke name="edit_file">\n<parameter name="path">src/mod_{i}.py</parameter>\n'
                f'<parameter name="old">{source_file(rng, 400)}</parameter>\n'
                f'<parameter name="new">{source_file(rng, 600)}</parameter>\n'
                '<parameter name="replace_all">false</parameter>\n</invoke>\n'
            )
        else:
            parts.append(
                '<invoke name="bash">\n<parameter name="command">pytest -q tests/</parameter>\n'
                '<parameter name="timeout">600</parameter>\n</invoke>\n'
            )
    parts.append("</minimax:tool_call>")
    return "".join(parts)


def token_chunks(text: str, rng: random.Random) -> list[str]:
    chunks, i = [], 0
    while i < len(text):
        size = rng.randint(1, 7)  # about what one BPE token of code or prose decodes to
        chunks.append(text[i : i + size])
        i += size
    return chunks


def stream_parse(chunks: list[str]) -> int:
    parser = CompletionParser(TOOLS)
    calls = 0
    for chunk in chunks:
        calls += sum(1 for e in parser.feed(chunk) if isinstance(e, ToolCallEvent))
    return calls + sum(1 for e in parser.finish() if isinstance(e, ToolCallEvent))


INVOKE = re.compile(r'<invoke name="([^"]*)">(.*?)</invoke>', re.S)
PARAM = re.compile(r'<parameter name="([^"]*)">(.*?)</parameter>', re.S)


def regex_peer(text: str) -> int:
    body = text.split("</think>", 1)[1]
    return sum(1 for m in INVOKE.finditer(body) if dict(PARAM.findall(m.group(2))) is not None)


def best_of(repeat: int, fn, *args) -> tuple[float, int]:
    times, result = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--file-kb", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(0)
    text = completion(rng, args.calls, args.file_kb)
    chunks = token_chunks(text, rng)
    megabytes = len(text.encode("utf-8")) / 1e6
    stream_s, stream_calls = best_of(args.repeat, stream_parse, chunks)
    whole_s, _ = best_of(args.repeat, stream_parse, [text])
    peer_s, peer_calls = best_of(args.repeat, regex_peer, text)
    assert stream_calls == peer_calls == args.calls, (stream_calls, peer_calls)
    print(
        f"completion: {megabytes:.2f} MB, {len(chunks)} chunks (mean {len(text) / len(chunks):.1f} chars), "
        f"{args.calls} calls"
    )
    print(
        f"streaming parse, token-sized chunks: {megabytes / stream_s:8.1f} MB/s  "
        f"({1e6 * stream_s / len(chunks):.2f} us per chunk)"
    )
    print(f"same parser, whole text in one feed:  {megabytes / whole_s:8.1f} MB/s")
    print(f"peer: one regex pass, finished text:  {megabytes / peer_s:8.1f} MB/s")
    print(f"ratio streaming / regex peer: {peer_s / stream_s:.3f} (best of {args.repeat} runs each)")


if __name__ == "__main__":
    main()
