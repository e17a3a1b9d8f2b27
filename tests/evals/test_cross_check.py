"""`eval grade --cross-check` against the real engine: swebench's own grading of our saved logs, and
the run's predictions and reports in the layout swebench's run_evaluation writes, read by its code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from swebench.harness import grading as swebench_grading
from swebench.harness import reporting as swebench_reporting
from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT
from swebench.harness.utils import get_predictions_from_file

from evals.agents import EmptyAgent, GoldAgent
from evals.cross_check import cross_check, parser_for, runner_output
from evals.runner import EvalRunner, RunOptions
from tests.evals import synthetic

CLI = [sys.executable, "-m", "agent", "eval"]
# swebench's pytest parser splits a summary line at whitespace, so it reads the parametrized id
# "test_slugify_examples[a  b-a-b]" as "test_slugify_examples[a": it cannot see that test pass.
SPACED_ID_TASK = "mmx-evals__textkit-1"


@pytest.fixture(scope="module")
def runs(synthetic_suite, env_image, tmp_path_factory):
    """The synthetic suite run once with the gold patches and once with none."""
    root = tmp_path_factory.mktemp("cross-check")
    tasks = synthetic_suite.tasks()
    outputs = {}
    for agent in (GoldAgent(), EmptyAgent()):
        options = RunOptions(output=root / agent.name, repos_dir=synthetic_suite.repos_dir, workers=2)
        summary = EvalRunner(tasks, agent, options).run()
        assert summary["infra_failures"] == 0
        outputs[agent.name] = root / agent.name
    return outputs


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_swebench_agrees_with_every_verdict_but_where_its_parser_cannot_read_the_test_id(runs):
    gold = cross_check(runs["gold"])
    assert gold.agree == 2 and gold.not_tested == 0
    [disagreement] = gold.disagree
    assert disagreement["instance_id"] == SPACED_ID_TASK
    assert disagreement["ours"] == "resolved" and disagreement["swebench"] == "RESOLVED_PARTIAL"
    assert disagreement["tests"] == [
        {"test": synthetic.SLUG_EXAMPLES[0], "ours": "passed", "swebench": "missing"}
    ]

    empty = cross_check(runs["empty"])
    assert empty.agree == 3 and empty.disagree == []


def test_the_command_prints_the_cross_check_and_exits_1_on_a_disagreement(runs):
    result = cli("grade", str(runs["empty"]), "--cross-check")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["cross_check"] == {"agree": 3, "disagree": [], "not_tested": 0}

    result = cli("grade", str(runs["gold"]), "--cross-check")
    assert result.returncode == 1, result.stderr[-2000:]
    data = json.loads(result.stdout)["cross_check"]
    assert [d["instance_id"] for d in data["disagree"]] == [SPACED_ID_TASK]
    assert f"disagree run-1/{SPACED_ID_TASK}: ours resolved, swebench RESOLVED_PARTIAL" in result.stderr


def test_a_broken_log_parser_makes_the_cross_check_disagree(runs):
    def broken(repo):
        real = parser_for(repo)
        # Reads every test as failed: the gold run's verdicts can no longer be reproduced.
        return lambda log, spec: dict.fromkeys(real(log, spec), "FAILED")

    gold = cross_check(runs["gold"], parser=broken)
    assert gold.agree == 0
    assert sorted(d["instance_id"] for d in gold.disagree) == sorted(synthetic.TASK_IDS)
    assert all(d["swebench"] == "RESOLVED_NO" and d["ours"] == "resolved" for d in gold.disagree)


def test_the_test_section_is_read_between_swebench_markers_or_after_our_eval_script():
    start, end = ">>>>> Start Test Output", ">>>>> End Test Output"
    ours = "restored: {}\n$ bash eval.sh\nPASSED t.py::a\n[exit 0]"
    assert runner_output(ours, start, end) == "PASSED t.py::a"
    marked = f"$ bash eval.sh\nsetup\n{start}\nPASSED t.py::b\n{end}\n[exit 0]"
    assert runner_output(marked, start, end) == "\nPASSED t.py::b\n"


def test_preds_json_is_read_by_swebench_and_a_rerun_from_it_grades_nothing_again(
    runs, synthetic_suite, tmp_path
):
    gold = tmp_path / "gold"
    shutil.copytree(runs["gold"], gold)
    preds_path = gold / "preds.json"
    preds = json.loads(preds_path.read_text())
    assert preds == json.loads((gold / "run-1" / "preds.json").read_text())
    theirs = get_predictions_from_file(str(preds_path), "unused", "test")
    assert sorted(p["instance_id"] for p in theirs) == sorted(synthetic.TASK_IDS)
    for prediction in theirs:
        assert prediction == preds[prediction["instance_id"]]
        assert set(prediction) == {"instance_id", "model_name_or_path", "model_patch"}
        assert prediction["model_name_or_path"] == "gold"

    # Round trip: the same predictions given back are the same patches, so every verdict stands.
    graded_before = len((gold / "events.jsonl").read_text().splitlines())
    result = cli(
        "run", str(gold / "tasks.jsonl"), "--predictions", str(preds_path), "-o", str(gold),
        "--repos-dir", str(synthetic_suite.repos_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["resolved_runs_per_instance"] == dict.fromkeys(synthetic.TASK_IDS, 1)
    assert len((gold / "events.jsonl").read_text().splitlines()) == graded_before


def test_swebench_make_run_report_reads_our_layout_into_our_run_report(runs, tmp_path, monkeypatch):
    for name, resolved in (("gold", 3), ("empty", 0)):
        output = tmp_path / name
        shutil.copytree(runs[name], output)
        ours = json.loads((output / f"{name}.run-1.json").read_text())
        assert ours["resolved_instances"] == resolved
        preds = json.loads((output / "preds.json").read_text())
        dataset = [json.loads(line) for line in (output / "tasks.jsonl").read_text().splitlines()]
        monkeypatch.chdir(output)  # run_evaluation reads logs/run_evaluation/... from the working directory
        written = swebench_reporting.make_run_report(preds, dataset, "run-1")
        assert json.loads((output / written).read_text()) == ours
    empty_report = json.loads((tmp_path / "empty" / "empty.run-1.json").read_text())
    assert empty_report["empty_patch_ids"] == sorted(synthetic.TASK_IDS)  # not evaluated, as swebench does
    assert not (tmp_path / "empty" / "logs" / "run_evaluation" / "run-1").exists()


def test_instance_reports_have_exactly_the_keys_of_swebench_get_eval_report(runs, tmp_path):
    instance_id = "mmx-evals__calc-1"
    folder = runs["gold"] / "logs" / "run_evaluation" / "run-1" / "gold" / instance_id
    ours = json.loads((folder / "report.json").read_text())
    assert {p.name for p in folder.iterdir()} == {"report.json", "patch.diff", "eval.sh", "test_output.txt"}
    # swebench's own report for a log of the same tests, graded by its rules for a repository it knows.
    log = tmp_path / "test_output.txt"
    log.write_text(f"{START_TEST_OUTPUT}\nPASSED t.py::a\nPASSED t.py::b\n{END_TEST_OUTPUT}\n")
    spec = SimpleNamespace(
        instance_id=instance_id,
        repo="psf/requests",
        version="2.0",
        FAIL_TO_PASS=["t.py::a"],
        PASS_TO_PASS=["t.py::b"],
    )
    prediction = {"instance_id": instance_id, "model_name_or_path": "gold", "model_patch": "diff"}
    theirs = swebench_grading.get_eval_report(spec, prediction, str(log), include_tests_status=True)
    assert set(ours) == set(theirs) == {instance_id}
    assert set(ours[instance_id]) == set(theirs[instance_id])
    assert set(ours[instance_id]["tests_status"]) == set(theirs[instance_id]["tests_status"])
    assert ours[instance_id]["resolved"] is theirs[instance_id]["resolved"] is True


def test_a_task_without_a_prediction_is_incomplete_and_a_null_patch_empty_as_swebench_counts(
    synthetic_suite, tmp_path
):
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(
        json.dumps({"instance_id": "mmx-evals__calc-1", "model_name_or_path": "m/x", "model_patch": None})
    )
    output = tmp_path / "out"
    # No task has a patch to grade, so nothing needs an image.
    result = cli("run", str(synthetic_suite.suite), "--predictions", str(predictions), "-o", str(output))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((output / "preds.json").read_text()) == {
        "mmx-evals__calc-1": {
            "instance_id": "mmx-evals__calc-1",
            "model_name_or_path": "m/x",
            "model_patch": None,
        }
    }
    report = json.loads((output / "m__x.run-1.json").read_text())
    assert report["incomplete_ids"] == ["mmx-evals__textkit-1", "mmx-evals__textkit-2"]
    assert report["empty_patch_ids"] == report["submitted_ids"] == ["mmx-evals__calc-1"]
    assert report["completed_instances"] == report["error_instances"] == 0


def test_cross_check_without_swebench_or_without_a_run_is_bad_usage(tmp_path):
    script = (
        "import sys; sys.modules['swebench'] = None\n"
        "from pathlib import Path\nfrom evals.cross_check import cross_check\n"
        "try:\n    cross_check(Path(sys.argv[1]))\nexcept ValueError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert "pip install 'mmx-agent[swebench]'" in result.stdout, result.stderr[-2000:]
    result = cli("grade", str(tmp_path), "--cross-check")
    assert result.returncode == 2 and "is not an `eval run` output directory" in result.stderr
    assert result.stdout == ""
