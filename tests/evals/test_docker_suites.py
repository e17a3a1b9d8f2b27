"""Against the real engine: gold resolves every task and the base none, on both suites; instances
hold no history; a broken environment is an infrastructure failure that a rerun retries."""

from __future__ import annotations

import json

from evals.agents import EmptyAgent, GoldAgent
from evals.environments import GIT_ENV, REPO_DIR
from evals.runner import EvalRunner, RunOptions
from evals.sources import materialize
from sandbox.docker import DockerSandbox
from tests.evals import synthetic


def run(tasks, agent, output, **options):
    return EvalRunner(tasks, agent, RunOptions(output=output, **options)).run()


def instance_reports(output, run_number=1):
    report = json.loads((output / f"run-{run_number}" / "report.json").read_text())
    return report


def test_gold_resolves_every_synthetic_task_and_the_base_none(synthetic_suite, env_image, tmp_path):
    tasks = synthetic_suite.tasks()
    gold = run(tasks, GoldAgent(), tmp_path / "gold", repos_dir=synthetic_suite.repos_dir)
    assert gold["mean_resolve_rate"] == 1.0 and gold["infra_failures"] == 0
    report = instance_reports(tmp_path / "gold")
    assert report["resolved_ids"] == [t.instance_id for t in tasks]
    job = tmp_path / "gold" / "run-1" / "mmx-evals__textkit-1"
    for name in ("patch.diff", "eval.sh", "test_output.txt", "junit.xml", "report.json", "grading.json"):
        assert (job / name).is_file(), name
    outcomes = json.loads((job / "grading.json").read_text())["outcomes"]
    assert outcomes[synthetic.SLUG_EXAMPLES[1]] == "passed"  # the id with a quote and \n reached pytest
    preds = json.loads((tmp_path / "gold" / "run-1" / "preds.json").read_text())
    assert preds["mmx-evals__calc-1"]["model_patch"] == tasks[2].patch

    empty = run(tasks, EmptyAgent(), tmp_path / "empty", repos_dir=synthetic_suite.repos_dir)
    assert empty["mean_resolve_rate"] == 0.0 and empty["infra_failures"] == 0
    for task in tasks:
        entry = json.loads((tmp_path / "empty" / "run-1" / task.instance_id / "report.json").read_text())
        status = entry[task.instance_id]["tests_status"]
        assert status["FAIL_TO_PASS"]["success"] == []  # every F2P test fails on the base ...
        assert status["PASS_TO_PASS"]["failure"] == []  # ... and every P2P test passes there


def test_gold_resolves_every_pypi_fix_and_the_base_none(pypi_fixes, tmp_path):
    gold = run(pypi_fixes, GoldAgent(), tmp_path / "gold", workers=2)
    assert gold["resolved_runs_per_instance"] == {t.instance_id: 1 for t in pypi_fixes}
    empty = run(pypi_fixes, EmptyAgent(), tmp_path / "empty", workers=2)
    assert empty["resolved_runs_per_instance"] == {t.instance_id: 0 for t in pypi_fixes}
    assert gold["infra_failures"] == empty["infra_failures"] == 0


def test_an_instance_holds_the_base_as_one_commit_and_nothing_of_the_future(
    synthetic_suite, builder, docker_client
):
    task = synthetic_suite.task("mmx-evals__textkit-1")
    instance = builder.instance_image(task, materialize(task, synthetic_suite.repos_dir))
    info = synthetic_suite.info["textkit"]
    base_tree = synthetic.git(
        synthetic_suite.repos_dir / "mmx-evals__textkit", "rev-parse", f"{info['base']}^{{tree}}"
    )
    future = " ".join(info["future"])
    script = (
        f"git log --all --format=%H | wc -l; git rev-parse HEAD; git rev-parse 'HEAD^{{tree}}'; "
        f"for c in {future}; do git cat-file -e $c 2>/dev/null && echo LEAK $c; done; "
        "git remote; git tag; git stash list; git reflog | wc -l; git status --porcelain; "
        "ls .git/packed-refs 2>/dev/null; echo end"
    )
    with DockerSandbox.create(instance.tag, root=REPO_DIR, client=docker_client) as box:
        result = box.exec(script, env=GIT_ENV)
        tests_pass_at_base = box.exec("pytest -q tests -p no:cacheprovider", env=GIT_ENV)
    lines = result.output.split()
    assert result.exit_code == 0, result.output
    assert lines[0] == "1"  # one commit, whatever refs exist
    assert lines[1] == instance.snapshot_commit
    assert lines[2] == base_tree.strip()  # exactly the base commit's files
    assert "LEAK" not in result.output
    assert lines[3:] == ["1", "end"]  # no remotes, tags, stash; one reflog entry; a clean tree
    assert tests_pass_at_base.exit_code == 0, tests_pass_at_base.output  # installed: imports work


def test_a_broken_environment_is_an_infra_failure_and_a_rerun_retries_only_it(
    synthetic_suite, env_image, tmp_path
):
    good = next(r for r in synthetic_suite.records if r["instance_id"] == "mmx-evals__calc-1")
    broken = {
        **good,
        "instance_id": "mmx-evals__calc-broken",
        "environment": {**good["environment"], "install": ["echo 'the build needs a network' >&2; exit 3"]},
    }
    suite = synthetic.write_suite(tmp_path / "suite.jsonl", [good, broken])
    from evals.suite import load_suite

    tasks = load_suite(suite)
    output = tmp_path / "out"
    summary = run(tasks, GoldAgent(), output, repos_dir=synthetic_suite.repos_dir)
    assert summary["infra_failures"] == 1
    report = instance_reports(output)
    assert report["resolved_ids"] == ["mmx-evals__calc-1"]
    assert report["infra_failure_ids"] == report["error_ids"] == ["mmx-evals__calc-broken"]
    entry = json.loads((output / "run-1" / "mmx-evals__calc-broken" / "report.json").read_text())
    failure = entry["mmx-evals__calc-broken"]["infra_failure"]
    assert failure["kind"] == "build" and "the build needs a network" in failure["message"]
    assert entry["mmx-evals__calc-broken"]["resolved"] is False

    run(tasks, GoldAgent(), output, repos_dir=synthetic_suite.repos_dir)
    events = [json.loads(line) for line in (output / "events.jsonl").read_text().splitlines()]
    graded = [e["instance_id"] for e in events]
    assert graded.count("mmx-evals__calc-broken") == 2  # retried
    assert graded.count("mmx-evals__calc-1") == 1  # its result was reused
