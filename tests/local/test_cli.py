"""`mmx-agent model init|generate|info` as a new user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The installed console script, as a user runs it (python -m agent where the venv has no script).
SCRIPT = Path(sys.executable).parent / "mmx-agent"
COMMAND = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "agent"]


def mmx(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LC_ALL": "C", "PYTHONIOENCODING": "ascii"}  # output must not depend on the locale
    done = subprocess.run([*COMMAND, "model", *map(str, args)], capture_output=True, env=env, timeout=120)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8", "replace")
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    done = mmx("init", out, "--preset", "tiny", "--seed", "7")
    assert done.returncode == 0, done.stderr
    return out


def test_init_writes_the_hugging_face_layout(tiny):
    names = {p.name for p in tiny.iterdir()}
    assert {
        "config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    } <= names
    assert len([n for n in names if n.endswith(".safetensors")]) >= 1
    config = json.loads((tiny / "config.json").read_text())
    assert config["rotary_dim"] == 8 and config["scoring_func"] == "sigmoid"  # MiniMax's dialect
    assert config["max_position_embeddings"] == 32768  # room for the agent's prompt and several rounds
    assert "]~b]" in json.loads((tiny / "tokenizer_config.json").read_text())["chat_template"]


def test_generate_text_and_json(tiny):
    text = mmx(
        "generate", tiny, "--prompt", "]~b]user\nhello[e~[\n]~b]ai\n", "--max-new-tokens", "12", "--seed", "1"
    )
    assert text.returncode == 0, text.stderr
    assert text.stdout.endswith("\n") and len(text.stdout) > 1
    a = mmx("generate", tiny, "--prompt-ids", "5,6,7", "--max-new-tokens", "16", "--greedy", "--json")
    assert a.returncode == 0, a.stderr
    first = json.loads(a.stdout)
    assert set(first) == {"ids", "text"} and 0 < len(first["ids"]) <= 16
    assert isinstance(first["text"], str)


def test_generate_matches_the_library(tiny):
    from agent.backends.local.backend import LocalModel
    from agent.backends.local.generate import SamplingParams

    out = json.loads(
        mmx(
            "generate",
            tiny,
            "--prompt-ids",
            "9,8,7,6",
            "--max-new-tokens",
            "10",
            "--greedy",
            "--json",
            "--dtype",
            "float32",
        ).stdout
    )
    lm = LocalModel(tiny, dtype="float32")
    ids = list(lm.generator.generate([9, 8, 7, 6], 10, SamplingParams(greedy=True), (lm.tokenizer.eos_id,)))
    assert out["ids"] == ids and out["text"] == lm.tokenizer.decode(ids)


def test_fp8_init_and_info(tmp_path):
    out = tmp_path / "fp8"
    assert mmx("init", out, "--preset", "tiny", "--fp8").returncode == 0
    info = mmx("info", out, "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["quantization"].startswith("fp8") and "F8_E4M3" in data["stored_dtypes"]
    assert 0 < data["parameters_active"] < data["parameters_total"]
    gen = mmx("generate", out, "--prompt", "hi", "--max-new-tokens", "4", "--seed", "0", "--json")
    assert gen.returncode == 0, gen.stderr
    text = mmx("info", out)
    assert "parameters total" in text.stdout and "fp8" in text.stdout


def test_errors_are_clear(tmp_path, tiny):
    missing = mmx("generate", tmp_path / "nothing", "--prompt", "x")
    assert (
        missing.returncode == 1
        and "no such checkpoint directory" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    both = mmx("generate", tiny, "--prompt", "x", "--prompt-ids", "1")
    assert both.returncode == 1 and "exactly one" in both.stderr
    bad = mmx("generate", tiny, "--prompt-ids", "1,999999")
    assert bad.returncode == 1 and "999999" in bad.stderr
    assert mmx("init", tmp_path / "x", "--preset", "huge").returncode == 1
    again = mmx("init", tiny)
    assert again.returncode == 1 and "--force" in again.stderr


def test_init_context_option(tmp_path):
    out = tmp_path / "short"
    done = mmx("init", out, "--context", "4096")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "config.json").read_text())["max_position_embeddings"] == 4096
    assert "context 4,096" in done.stderr
    assert mmx("init", tmp_path / "tiny-context", "--context", "16").returncode == 2


def test_init_never_writes_into_a_directory_that_is_not_a_checkpoint(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    for extra in ([], ["--force"]):
        done = mmx("init", work, *extra)
        assert done.returncode == 1 and "not empty" in done.stderr
    assert [p.name for p in work.iterdir()] == ["notes.txt"]
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "config.json").write_text("{}")
    (repo / "x.safetensors").write_bytes(b"")
    done = mmx("init", repo, "--force")  # looks like a checkpoint, but it is someone's repository
    assert done.returncode == 1 and sorted(p.name for p in repo.iterdir()) == [
        ".git",
        "config.json",
        "x.safetensors",
    ]


def test_switching_the_kernels_off_says_so_once(tiny):
    env = {**os.environ, "MMX_AGENT_CPU_KERNELS": "0"}
    done = subprocess.run(
        [
            *COMMAND,
            "model",
            "generate",
            str(tiny),
            "--prompt-ids",
            "5,6",
            "--max-new-tokens",
            "4",
            "--greedy",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning: CPU decode kernels switched off (MMX_AGENT_CPU_KERNELS=0)") == 1
    assert (
        "Traceback" not in done.stderr and ".py:" not in done.stderr
    )  # a line for people, not a source location
