"""Task records, suite files and predictions files: SWE-bench's spellings in, clear errors out."""

from __future__ import annotations

import json

import pytest

from evals.agents import PredictionsAgent, PredictionsError, load_predictions
from evals.suite import SuiteError, load_suite, load_tasks, select
from evals.task import TaskError, parse_task

RECORD = {
    "instance_id": "owner__repo-1",
    "repo": "owner/repo",
    "base_commit": "abc123",
    "problem_statement": "It breaks.",
    "patch": "diff --git a/x b/x\n",
    "test_patch": "diff --git a/t b/t\n",
    "FAIL_TO_PASS": ["t.py::test_a"],
    "PASS_TO_PASS": ["t.py::test_b"],
}


def test_swe_bench_rows_load_with_json_encoded_test_lists_and_extra_fields():
    row = {
        **RECORD,
        "FAIL_TO_PASS": '["t.py::test_a", "t.py::test_c"]',
        "PASS_TO_PASS": "[]",
        "version": 1.2,
        "image": "ignored/but:kept",
    }
    task = parse_task(row)
    assert task.FAIL_TO_PASS == ["t.py::test_a", "t.py::test_c"]
    assert task.PASS_TO_PASS == []
    assert task.version == "1.2"
    assert task.environment.python == "3.11" and task.environment.test_cmd == "pytest"
    assert task.extra == {"image": "ignored/but:kept"}
    assert task.to_record()["image"] == "ignored/but:kept"
    assert parse_task(task.to_record()).to_record() == task.to_record()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"instance_id": "../escape"}, "instance_id"),
        ({"FAIL_TO_PASS": []}, "FAIL_TO_PASS is empty"),
        ({"FAIL_TO_PASS": "not json"}, "not a JSON list"),
        ({"repo": "no-slash"}, "owner/name"),
        ({"base_commit": ""}, "base_commit"),
        ({"test_patch": ""}, "test_patch"),
        ({"environment": {"python": "2.7"}}, "not supported"),
        ({"environment": {"pyhton": "3.11"}}, "unknown environment field"),
        ({"source": {"svn": "x"}}, "source"),
        ({"source": {"sdist": "just-a-name"}}, "package==version"),
        ({"fix_release": {"sdist": "a==1", "patch_files": ["a.py"], "test_files": ["t.py"]}}, "not both"),
    ],
)
def test_bad_records_are_refused_with_the_field_named(change, message):
    with pytest.raises(TaskError, match=message):
        parse_task({**RECORD, **change}, "suite.jsonl:3")


def test_an_sdist_task_needs_no_commit_and_may_derive_its_patches():
    task = parse_task(
        {
            **RECORD,
            "base_commit": "",
            "patch": "",
            "test_patch": "",
            "source": {"sdist": "pkg==1.0"},
            "fix_release": {"sdist": "pkg==1.1", "patch_files": ["pkg.py"], "test_files": ["tests/t.py"]},
        }
    )
    assert task.source == {"sdist": "pkg==1.0"} and task.fix_release.sdist == "pkg==1.1"


def test_suites_are_a_json_list_jsonl_or_a_directory(tmp_path):
    second = {**RECORD, "instance_id": "owner__repo-2"}
    (tmp_path / "list.json").write_text(json.dumps([RECORD, second]))
    (tmp_path / "lines.jsonl").write_text(json.dumps(RECORD) + "\n\n" + json.dumps(second) + "\n")
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(RECORD))
    (folder / "b.jsonl").write_text(json.dumps(second) + "\n")
    (folder / "notes.txt").write_text("not a task")
    for path in ("list.json", "lines.jsonl", "dir"):
        assert [t.instance_id for t in load_tasks(tmp_path / path)] == ["owner__repo-1", "owner__repo-2"]


def test_suite_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps(RECORD) + "\n{oops\n")
    with pytest.raises(SuiteError, match=r"bad.jsonl:2"):
        load_tasks(tmp_path / "bad.jsonl")
    (tmp_path / "dup.json").write_text(json.dumps([RECORD, RECORD]))
    with pytest.raises(SuiteError, match="already appears"):
        load_tasks(tmp_path / "dup.json")
    with pytest.raises(SuiteError, match="built-in suites: pypi-fixes"):
        load_tasks(tmp_path / "missing")


def test_instance_ids_select_in_suite_order_and_unknown_ids_are_named(tmp_path):
    tasks = [parse_task({**RECORD, "instance_id": f"o__r-{i}"}) for i in range(3)]
    assert [t.instance_id for t in select(tasks, ["o__r-2,o__r-0"])] == ["o__r-0", "o__r-2"]
    with pytest.raises(SuiteError, match="o__r-9"):
        select(tasks, ["o__r-9"])


def test_the_builtin_pypi_fixes_suite_holds_references_only():
    tasks = load_tasks("pypi-fixes")
    assert len(tasks) >= 6
    for task in tasks:
        assert not task.patch and not task.test_patch  # derived at build time, never stored
        assert task.source and "sdist" in task.source and task.fix_release is not None
        assert task.FAIL_TO_PASS and task.PASS_TO_PASS
        assert task.environment.pip == tasks[0].environment.pip  # one shared env image
        assert all("==" in requirement for requirement in task.environment.pip)
    with pytest.raises(SuiteError):
        load_suite("pypi-fixes", ["nope"])


def test_predictions_load_from_a_list_jsonl_or_a_dict(tmp_path):
    prediction = {"instance_id": "a", "model_name_or_path": "m", "model_patch": "diff"}
    other = {"instance_id": "b", "model_name_or_path": "m", "model_patch": None}
    (tmp_path / "list.json").write_text(json.dumps([prediction, other]))
    (tmp_path / "lines.jsonl").write_text(json.dumps(prediction) + "\n" + json.dumps(other) + "\n")
    (tmp_path / "dict.json").write_text(json.dumps({"a": prediction, "b": {"model_patch": None}}))
    for name in ("list.json", "lines.jsonl", "dict.json"):
        loaded = load_predictions(tmp_path / name)
        assert loaded["a"]["model_patch"] == "diff" and loaded["b"]["model_patch"] is None
    agent = PredictionsAgent(load_predictions(tmp_path / "list.json"))
    assert agent.name == "m"
    task = parse_task({**RECORD, "instance_id": "a"})
    assert agent.solve(task, None, tmp_path, None).patch == "diff"
    missing = parse_task({**RECORD, "instance_id": "zzz"})
    assert agent.solve(missing, None, tmp_path, None).patch is None
    (tmp_path / "bad.json").write_text(json.dumps([{"model_patch": "x"}]))
    with pytest.raises(PredictionsError, match="instance_id"):
        load_predictions(tmp_path / "bad.json")


def test_a_task_saved_with_an_output_reloads_with_its_derived_patches_and_no_download():
    from evals.runner import saved_record

    task = parse_task(
        {
            **RECORD,
            "base_commit": "",
            "patch": "",
            "test_patch": "",
            "source": {"sdist": "pkg==1.0"},
            "fix_release": {"sdist": "pkg==1.1", "patch_files": ["pkg.py"], "test_files": ["tests/t.py"]},
        }
    )
    task.patch, task.test_patch = "gold diff", "test diff"  # as derive_patches leaves it
    reloaded = parse_task(json.loads(json.dumps(saved_record(task))))
    assert reloaded.fix_release is None and (reloaded.patch, reloaded.test_patch) == (
        "gold diff",
        "test diff",
    )
    assert reloaded.extra["derived_from"]["sdist"] == "pkg==1.1"
