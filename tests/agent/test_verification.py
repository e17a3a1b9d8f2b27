"""Verification we run ourselves at the end of a -p run: --verify, detection, retries, --require-verified."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from agent.planner.verification import detect_test_command
from sandbox.local import LocalSandbox
from tests.agent.helpers import git, raw_completion, run_cli, write_replay

DOCS = Path(__file__).resolve().parents[2] / "docs"
FIX = raw_completion(
    "fix", "", [("edit_file", {"path": "calc.py", "old": "return a - b", "new": "return a + b"})]
)
WRONG_FIX = raw_completion(
    "fix?", "", [("edit_file", {"path": "calc.py", "old": "return a - b", "new": "return a * b"})]
)
RUN_SCRIPT = raw_completion("check", "", [("bash", {"command": "python3 test_calc.py"})])
DONE = raw_completion("done", "Fixed add.")


def calc_repo(root: Path, **extra_files: str) -> Path:
    """calc.py with a bug, and a test_calc.py that runs as a plain script (no pytest needed)."""
    repo = root / "proj"
    repo.mkdir(parents=True)
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
        'if __name__ == "__main__":\n    test_add()\n    print("all good")\n'
    )
    for name, text in extra_files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return repo


def run(tmp_path: Path, repo: Path, completions: list[str], *flags: str) -> tuple[int, dict, str]:
    replay = write_replay(tmp_path / "replay.jsonl", completions)
    proc = run_cli(
        "-p", "fix the failing test", "--backend", "replay", "--replay", str(replay),
        "--output-format", "json", "--permission-mode", "full-auto", *flags, cwd=repo,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    jsonschema.validate(result, json.loads((DOCS / "result-schema.json").read_text()))
    return proc.returncode, result, proc.stderr


def test_the_script_the_model_ran_is_verified_by_us_with_verify(tmp_path):
    repo = calc_repo(tmp_path)
    code, result, stderr = run(tmp_path, repo, [FIX, RUN_SCRIPT, DONE], "--verify", "python3 test_calc.py")
    assert code == 0 and result["status"] == "done" and result["verified"] is True
    verification = result["verification"]
    assert verification["command"] == "python3 test_calc.py" and verification["source"] == "flag"
    assert verification["passed"] is True and verification["exit_code"] == 0
    assert "all good" in verification["output_tail"]
    assert "verification passed" in stderr


def test_without_verify_the_same_run_is_not_verified(tmp_path):
    """The model's `python3 test_calc.py` is not a test command we recognise, and nothing is detected."""
    repo = calc_repo(tmp_path)
    code, result, stderr = run(tmp_path, repo, [FIX, RUN_SCRIPT, DONE])
    assert code == 0 and result["verified"] is False and result["verification"] is None
    assert "no test command found" in stderr


def test_a_pytest_config_is_detected_and_run(tmp_path):
    repo = calc_repo(tmp_path, **{"pyproject.toml": '[tool.pytest.ini_options]\ntestpaths = ["."]\n'})
    code, result, _ = run(tmp_path, repo, [FIX, DONE])  # the model runs no tests at all
    verification = result["verification"]
    assert verification["source"] == "detected" and verification["command"] == "python -m pytest -q"
    assert "pyproject.toml" in verification["rule"]
    assert verification["passed"] is True and result["verified"] is True and code == 0


def test_a_failed_verification_says_so_and_require_verified_exits_6(tmp_path):
    repo = calc_repo(tmp_path)
    code, result, _ = run(tmp_path, repo, [WRONG_FIX, DONE], "--verify", "python3 test_calc.py")
    assert code == 0 and result["status"] == "done"
    assert result["verified"] is False and result["verification"]["passed"] is False
    assert (
        result["verification"]["exit_code"] == 1 and "AssertionError" in result["verification"]["output_tail"]
    )

    repo2 = calc_repo(tmp_path / "again")
    code, result, _ = run(
        tmp_path, repo2, [WRONG_FIX, DONE], "--verify", "python3 test_calc.py", "--require-verified"
    )
    assert code == 6 and result["status"] == "unverified" and "python3 test_calc.py" in result["result"]


def test_require_verified_without_a_command_exits_6(tmp_path):
    repo = calc_repo(tmp_path)
    code, result, _ = run(tmp_path, repo, [FIX, RUN_SCRIPT, DONE], "--require-verified")
    assert code == 6 and result["status"] == "unverified" and result["verification"] is None
    assert "--verify" in result["result"]


def test_a_failed_verification_goes_back_to_the_model_with_retries(tmp_path):
    repo = calc_repo(tmp_path)
    completions = [
        WRONG_FIX,
        DONE,
        raw_completion("try again", "", [("edit_file", {"path": "calc.py", "old": "a * b", "new": "a + b"})]),
        DONE,
    ]
    replay = write_replay(tmp_path / "replay.jsonl", completions)
    proc = run_cli(
        "-p", "fix it", "--backend", "replay", "--replay", str(replay), "--output-format", "stream-json",
        "--permission-mode", "full-auto", "--verify", "python3 test_calc.py", "--verify-retries", "1", cwd=repo,
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    retry = [e for e in events if e["type"] == "user_message" and "We ran the project's tests" in e["text"]]
    assert len(retry) == 1 and "AssertionError" in retry[0]["text"]
    final = events[-1]
    assert proc.returncode == 0 and final["verified"] is True and final["verification"]["passed"] is True
    assert final["turns"] == 4


def test_the_command_is_chosen_before_the_model_can_rewrite_the_config(tmp_path):
    """A model that swaps the pytest config for a Makefile whose `test` always passes changes nothing."""
    repo = calc_repo(tmp_path, **{"pytest.ini": "[pytest]\n"})
    cheat = raw_completion(
        "make the check pass",
        "",
        [("bash", {"command": "rm pytest.ini && printf 'test:\\n\\ttrue\\n' > Makefile"})],
    )
    code, result, _ = run(tmp_path, repo, [cheat, DONE])
    assert result["verification"]["command"] == "python -m pytest -q"
    assert result["verification"]["passed"] is False and result["verified"] is False


@pytest.mark.parametrize(
    ("files", "command", "rule"),
    [
        ({"pyproject.toml": "[tool.pytest.ini_options]\n"}, "python -m pytest -q", "pyproject.toml"),
        ({"pyproject.toml": "[project]\nname = 'x'\n"}, None, None),
        ({"pytest.ini": "[pytest]\naddopts = -q\n"}, "python -m pytest -q", "pytest.ini"),
        ({"setup.cfg": "[tool:pytest]\n"}, "python -m pytest -q", "setup.cfg"),
        ({"tox.ini": "[pytest]\n"}, "python -m pytest -q", "tox.ini has [pytest]"),
        ({"tox.ini": "[tox]\nenvlist = py3\n"}, "tox", "tox.ini"),
        ({"noxfile.py": "import nox\n"}, "nox", "noxfile.py"),
        ({"package.json": '{"scripts": {"test": "jest"}}'}, "npm test", "package.json"),
        (
            {"package.json": '{"scripts": {"test": "echo \\"Error: no test specified\\" && exit 1"}}'},
            None,
            None,
        ),
        ({"go.mod": "module x\n"}, "go test ./...", "go.mod"),
        ({"Cargo.toml": "[package]\n"}, "cargo test", "Cargo.toml"),
        ({"Makefile": "all:\n\tcc x.c\ncheck: all\n\t./x\n"}, "make check", "`check` target"),
        ({"Makefile": "CHECK := 1\n"}, None, None),
        ({"pyproject.toml": "not toml ["}, None, None),
        ({}, None, None),
    ],
)
def test_detection_rules(tmp_path, files, command, rule):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = detect_test_command(LocalSandbox(str(tmp_path)))
    assert (found and found.command) == command
    if rule is not None:
        assert rule in found.rule


def test_verify_flags_need_a_print_run(tmp_path):
    proc = run_cli("--verify", "true", cwd=tmp_path)
    assert proc.returncode == 2 and "apply to -p runs" in proc.stderr
