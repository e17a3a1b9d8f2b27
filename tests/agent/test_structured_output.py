"""--json-schema: the final answer must validate; one more try after an invalid one; then invalid_output."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from tests.agent.helpers import make_buggy_repo, raw_completion, run_cli, write_replay

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA = {
    "type": "object",
    "properties": {"bug": {"type": "string"}, "files": {"type": "array", "items": {"type": "string"}}},
    "required": ["bug", "files"],
    "additionalProperties": False,
}
VALID = '{"bug": "add subtracts", "files": ["calc.py"]}'


def run(tmp_path, answers: list[str], schema: str, *extra: str) -> tuple[int, dict]:
    repo = make_buggy_repo(tmp_path)
    completions = [raw_completion("look", "", [("read_file", {"path": "calc.py"})])]
    completions += [raw_completion("answer", text) for text in answers]
    replay = write_replay(tmp_path / "replay.jsonl", completions)
    proc = run_cli(
        "-p", "what is wrong?", "--backend", "replay", "--replay", str(replay), "--output-format", "json",
        "--json-schema", schema, *extra, cwd=repo,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    jsonschema.validate(result, json.loads((DOCS / "result-schema.json").read_text()))
    return proc.returncode, result


def test_a_valid_answer_becomes_the_result_object(tmp_path):
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    code, result = run(tmp_path, [VALID], str(schema_file))
    assert code == 0 and result["status"] == "done"
    assert result["result"] == {"bug": "add subtracts", "files": ["calc.py"]}


def test_a_fenced_answer_given_inline_schema_is_accepted(tmp_path):
    code, result = run(tmp_path, [f"```json\n{VALID}\n```"], json.dumps(SCHEMA))
    assert code == 0 and result["result"]["files"] == ["calc.py"]


def test_an_invalid_answer_gets_the_errors_and_one_more_try(tmp_path):
    code, result = run(tmp_path, ['{"bug": 3}', VALID], json.dumps(SCHEMA))
    assert code == 0 and result["status"] == "done" and result["result"]["bug"] == "add subtracts"
    assert result["turns"] == 3


def test_invalid_twice_ends_with_invalid_output(tmp_path):
    code, result = run(tmp_path, ["It is the minus sign.", '{"bug": "x"}'], json.dumps(SCHEMA))
    assert code == 1 and result["status"] == "invalid_output"
    assert "files" in result["result"] and "required" in result["result"]


def test_the_model_is_told_what_is_wrong(tmp_path):
    repo = make_buggy_repo(tmp_path)
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [raw_completion("answer", "not json"), raw_completion("answer", VALID)],
    )
    proc = run_cli(
        "-p", "what is wrong?", "--backend", "replay", "--replay", str(replay), "--output-format",
        "stream-json", "--json-schema", json.dumps(SCHEMA), cwd=repo,
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    retry = [e["text"] for e in events if e["type"] == "user_message"][1]
    assert "does not validate" in retry and "not JSON" in retry
    assert events[-1]["result"] == json.loads(VALID) and proc.returncode == 0


def test_a_bad_schema_is_bad_usage(tmp_path):
    for schema, says in (
        ('{"type": "nonsense"}', "not a valid JSON Schema"),
        ("missing.json", "cannot read"),
    ):
        proc = run_cli(
            "-p", "x", "--backend", "replay", "--output-format", "json", "--json-schema", schema, cwd=tmp_path
        )
        assert proc.returncode == 2 and says in proc.stderr
        assert json.loads(proc.stdout)["status"] == "usage_error"


def test_an_answer_nested_too_deep_is_a_problem_for_the_model_not_a_crash():
    from agent.planner.structured_output import check_answer

    value, problems = check_answer("[" * 100_000, {"type": "array"})
    assert value is None and "deeper than" in problems[0]
