"""Greedy decoding through the server writes exactly what the local model writes on its own, for one
request and for each of 8 requests sent at once."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serve.conftest import serve, server_env

NEW_TOKENS = 24
# Different first tokens: no prompt shares a prefix with another, so neither side reuses a cache.
PROMPTS = [[40 + 7 * i, 300 + i, 12, 99 + i, 5] for i in range(8)]


@pytest.fixture(scope="module")
def server(random_checkpoint, tmp_path_factory):
    with serve(random_checkpoint, tmp_path_factory.mktemp("greedy"), "--dtype", "float32") as s:
        yield s


@pytest.fixture(scope="module")
def reference(random_checkpoint):
    """The model's own greedy output per prompt (generate.Generator, no server)."""
    from agent.backends.local.backend import LocalModel
    from agent.backends.local.generate import SamplingParams

    lm = LocalModel(random_checkpoint, dtype="float32")
    greedy = SamplingParams(greedy=True)
    return [
        list(lm.generator.generate(p, NEW_TOKENS, greedy, stop_ids=(lm.tokenizer.eos_id,))) for p in PROMPTS
    ]


def complete(server, prompt: list[int]) -> list[int]:
    body = {
        "model": server.model,
        "prompt": prompt,
        "max_tokens": NEW_TOKENS,
        "temperature": 0,
        "return_token_ids": True,
    }
    reply = httpx.post(server.v1 + "/completions", json=body, timeout=300)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["token_ids"]


def test_one_request_matches_model_generate(server, random_checkpoint, reference):
    ids = ",".join(map(str, PROMPTS[0]))
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "model",
            "generate",
            str(random_checkpoint),
            "--prompt-ids",
            ids,
            "--max-new-tokens",
            str(NEW_TOKENS),
            "--greedy",
            "--dtype",
            "float32",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["ids"] == reference[0]
    assert complete(server, PROMPTS[0]) == reference[0]


def test_eight_concurrent_requests_each_match_their_own_greedy_output(server, reference):
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        got = list(pool.map(lambda p: complete(server, p), PROMPTS))
    for prompt, mine, expected in zip(PROMPTS, got, reference, strict=True):
        assert mine == expected, f"prompt {prompt}"
