"""Throughput and time to first token of `mmx-agent serve`, measured through its HTTP API.

    .venv/bin/python benchmarks/serve.py [--preset tiny|small] [--tokens 128] [--dtype bfloat16] [--rounds 3] [CKPT]

Starts the real server (port 0) on a random checkpoint (`model init --preset ...`, or CKPT), then:
- total generated tokens per second with 1, 4 and 8 concurrent streams, each against the same requests
  sent one after another in the same run (the ratio is what sharing the model buys);
- time to first token of a chat's second turn: with its prefix cached (the same conversation) and
  without (another conversation of the same length).
Requests use token-id prompts with ignore_eos, so every request generates exactly --tokens tokens.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def start(checkpoint: Path, dtype: str | None) -> tuple[subprocess.Popen, str]:
    args = [sys.executable, "-m", "agent", "serve", str(checkpoint), "--port", "0", "--max-queue", "256"]
    if dtype:
        args += ["--dtype", dtype]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    url = None
    for line in process.stderr:
        print(line.rstrip(), file=sys.stderr)
        found = re.search(r"listening on (http://\S+),", line)
        url = url or (found.group(1) if found else None)
        if "ready at" in line:
            return process, url
    raise SystemExit("the server exited before it was ready")


def complete(url: str, prompt: list[int], tokens: int) -> int:
    body = {"prompt": prompt, "max_tokens": tokens, "ignore_eos": True, "temperature": 0}
    reply = httpx.post(url + "/v1/completions", json=body, timeout=3600)
    reply.raise_for_status()
    return reply.json()["usage"]["completion_tokens"]


def throughput(url: str, prompts: list[list[int]], tokens: int, streams: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        total = sum(pool.map(lambda p: complete(url, p, tokens), prompts))
    return total / (time.perf_counter() - start)


def first_token_seconds(url: str, messages: list[dict]) -> float:
    body = {"messages": messages, "max_tokens": 1, "temperature": 0, "stream": True}
    start = time.perf_counter()
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=3600) as reply:
        for line in reply.iter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:])["choices"]
            # The first generated token: reasoning or text, or the end when it was a stop token.
            if choices and (choices[0]["delta"].get("content") or choices[0]["finish_reason"]):
                return time.perf_counter() - start
    return time.perf_counter() - start


def conversation(seed: int, words: int) -> list[dict]:
    text = " ".join(f"w{seed}x{i}" for i in range(words))
    return [
        {"role": "system", "content": f"Conversation {seed}. " + text},
        {"role": "user", "content": "Summarize the words above."},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", nargs="?", type=Path)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefix-words", type=int, default=400)
    a = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = a.checkpoint
        if checkpoint is None:
            checkpoint = Path(tmp) / a.preset
            subprocess.run(
                [sys.executable, "-m", "agent", "model", "init", str(checkpoint), "--preset", a.preset],
                check=True,
                cwd=ROOT,
            )
        process, url = start(checkpoint, a.dtype)
        try:
            complete(url, [1, 2, 3], 4)  # warm-up
            print(
                f"\n{'streams':>7}  {'one after another':>18}  {'concurrent':>11}  {'ratio':>6}   (tokens/s, {a.tokens} per request)"
            )
            for streams in (1, 4, 8):
                prompts = [[10 + 7 * i, 20 + i, 30] for i in range(streams)]
                # Alternate the two, best of --rounds each: load from other processes hits both alike.
                serial = together = 0.0
                for _ in range(a.rounds):
                    serial = max(serial, throughput(url, prompts, a.tokens, 1))
                    together = max(together, throughput(url, prompts, a.tokens, streams))
                print(f"{streams:>7}  {serial:>18.1f}  {together:>11.1f}  {together / serial:>5.2f}x")

            first = conversation(1, a.prefix_words)
            reply = httpx.post(
                url + "/v1/chat/completions",
                json={"messages": first, "max_tokens": 8, "temperature": 0},
                timeout=3600,
            ).json()
            turn = [
                {"role": "assistant", "content": reply["choices"][0]["message"]["content"]},
                {"role": "user", "content": "And now?"},
            ]
            cold_turn = conversation(2, a.prefix_words) + turn  # same length, nothing of it cached
            cold = first_token_seconds(url, cold_turn)
            httpx.post(
                url + "/v1/chat/completions",
                json={"messages": first, "max_tokens": 8, "temperature": 0},
                timeout=3600,
            )
            warm = first_token_seconds(url, first + turn)
            print(f"\ntime to first token, second turn of a ~{a.prefix_words}-word conversation:")
            print(f"  prefix reused: {warm * 1000:8.1f} ms\n  not reused:    {cold * 1000:8.1f} ms")
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
