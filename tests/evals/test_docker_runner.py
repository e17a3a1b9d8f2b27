"""The runner against the real engine: kill -9 and resume, predictions keyed by patch, re-grading,
validation from the command line, and the mmx agent working inside a task's container."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from agent.config import Settings
from evals.agents import MmxAgent
from evals.runner import EvalRunner, RunOptions
from sandbox import labels
from tests.agent.helpers import raw_completion, write_replay
from tests.evals import synthetic

CLI = [sys.executable, "-m", "agent", "eval"]
RUN_SECONDS = 900


def cli(*args: str, check_exit: int | None = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=RUN_SECONDS)
    if check_exit is not None:
        assert result.returncode == check_exit, result.stderr[-3000:]
    return result


def graded_events(output) -> list[str]:
    lines = (output / "events.jsonl").read_text().splitlines()
    return [json.loads(line)["instance_id"] for line in lines]


def containers_of(client, pid: int) -> list[dict]:
    prefix = f"{socket.gethostname()}:{pid}:"
    found = client.api.containers(all=True, filters=labels.PROJECT_FILTER)
    return [c for c in found if (c.get("Labels") or {}).get(labels.OWNER, "").startswith(prefix)]


def started(containers: list[dict]) -> list[dict]:
    return [c for c in containers if c.get("State") != "created"]


def test_a_run_killed_with_kill_9_resumes_and_finishes_every_task_exactly_once(
    synthetic_suite, env_image, docker_client, tmp_path
):
    output = tmp_path / "out"
    command = [*CLI, "run", str(synthetic_suite.suite), "--agent", "gold"]
    command += ["--repos-dir", str(synthetic_suite.repos_dir), "--output", str(output)]
    victim = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    give_up_at = time.monotonic() + RUN_SECONDS
    while not list(output.glob("run-1/*/report.json")):
        assert victim.poll() is None, victim.communicate()[1][-3000:]
        assert time.monotonic() < give_up_at
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate()
    finished = {
        path.parent.name: json.loads((path.parent / "grading.json").read_text())["graded_at"]
        for path in output.glob("run-1/*/report.json")
    }
    assert 1 <= len(finished) < 3  # killed in the middle of the run
    # Its started containers go with it (their lifeline was the killed process); one it created but
    # had not started yet (state "created") is swept up by the next sandbox anyone starts.
    give_up_at = time.monotonic() + 60
    while started(containers_of(docker_client, victim.pid)) and time.monotonic() < give_up_at:
        time.sleep(0.2)
    assert started(containers_of(docker_client, victim.pid)) == []

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=RUN_SECONDS)
    assert containers_of(docker_client, victim.pid) == []
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The first line comes before any slow work, so a cold run is never silent.
    assert resumed.stderr.startswith("3 job(s): 3 task(s) x 1 run(s)"), resumed.stderr[:500]
    summary = json.loads(resumed.stdout)
    assert summary["mean_resolve_rate"] == 1.0 and summary["jobs_run"] == 3 - len(finished)
    for instance_id, graded_at in finished.items():
        grading = json.loads((output / "run-1" / instance_id / "grading.json").read_text())
        assert grading["graded_at"] == graded_at  # not graded again
    events = graded_events(output)
    assert sorted(events) == sorted(t["instance_id"] for t in synthetic_suite.records)  # each exactly once


def test_predictions_are_graded_and_regraded_when_a_patch_changes(synthetic_suite, env_image, tmp_path):
    records = {r["instance_id"]: r for r in synthetic_suite.records}
    harmless = records["mmx-evals__calc-1"]["patch"]  # a real fix, but of another task
    predictions = tmp_path / "preds.jsonl"

    def write_predictions(textkit_2_patch: str) -> None:
        rows = [
            {
                "instance_id": "mmx-evals__textkit-1",
                "model_name_or_path": "m",
                "model_patch": records["mmx-evals__textkit-1"]["patch"],
            },
            {
                "instance_id": "mmx-evals__textkit-2",
                "model_name_or_path": "m",
                "model_patch": textkit_2_patch,
            },
        ]
        predictions.write_text("".join(json.dumps(row) + "\n" for row in rows))

    output = tmp_path / "out"
    args = [str(synthetic_suite.suite), "--predictions", str(predictions)]
    args += ["--repos-dir", str(synthetic_suite.repos_dir), "--output", str(output)]
    write_predictions(harmless)
    first = json.loads(cli("run", *args).stdout)
    assert first["resolved_runs_per_instance"] == {
        "mmx-evals__textkit-1": 1,
        "mmx-evals__textkit-2": 0,
        "mmx-evals__calc-1": 0,
    }
    report = json.loads((output / "run-1" / "report.json").read_text())
    assert report["submitted_ids"] == ["mmx-evals__textkit-1", "mmx-evals__textkit-2"]
    assert report["empty_patch_ids"] == ["mmx-evals__calc-1"]  # no prediction: patch_is_None
    assert report["error_ids"] == ["mmx-evals__textkit-2"]  # the other task's patch does not apply
    assert (
        json.loads((output / "run-1" / "preds.json").read_text())["mmx-evals__textkit-1"][
            "model_name_or_path"
        ]
        == "m"
    )

    write_predictions(records["mmx-evals__textkit-2"]["patch"])
    second = json.loads(cli("run", *args).stdout)
    assert second["resolved_runs_per_instance"]["mmx-evals__textkit-2"] == 1
    assert graded_events(output).count("mmx-evals__textkit-1") == 1  # same patch, same image: kept
    assert graded_events(output).count("mmx-evals__calc-1") == 1  # still no prediction: kept
    assert graded_events(output).count("mmx-evals__textkit-2") == 2  # new patch: graded again

    from_logs = json.loads(cli("grade", str(output), "--from-logs").stdout)
    assert from_logs["resolved_runs_per_instance"] == second["resolved_runs_per_instance"]
    regraded = json.loads(cli("grade", str(output), "--repos-dir", str(synthetic_suite.repos_dir)).stdout)
    assert regraded["resolved_runs_per_instance"] == second["resolved_runs_per_instance"]
    assert graded_events(output).count("mmx-evals__textkit-1") == 2


def test_validate_passes_a_good_task_and_names_what_is_wrong_with_a_bad_one(
    synthetic_suite, env_image, tmp_path
):
    good = next(r for r in synthetic_suite.records if r["instance_id"] == "mmx-evals__calc-1")
    bad = {
        **good,
        "instance_id": "mmx-evals__calc-bad",
        "FAIL_TO_PASS": ["tests/test_calc.py::test_add"],
        "PASS_TO_PASS": [],
    }
    suite = synthetic.write_suite(tmp_path / "suite.jsonl", [good, bad])
    result = cli(
        "validate", str(suite), "--runs", "1", "--repos-dir", str(synthetic_suite.repos_dir), check_exit=1
    )
    verdict = json.loads(result.stdout)
    checks = {task["instance_id"]: task for task in verdict["tasks"]}
    assert verdict["valid"] is False
    assert checks["mmx-evals__calc-1"]["valid"] and checks["mmx-evals__calc-1"]["gold_resolved"] == 1
    assert checks["mmx-evals__calc-bad"]["empty_resolved"] == 1
    assert any("pass without the fix" in p for p in checks["mmx-evals__calc-bad"]["problems"])
    assert "INVALID mmx-evals__calc-bad" in result.stderr


def test_the_mmx_agent_fixes_a_task_inside_its_container_and_is_not_rerun(
    synthetic_suite, env_image, tmp_path, isolated_state
):
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion("Read the module first.", "", [("read_file", {"path": "calc.py"})]),
            raw_completion(
                "divide floors; make it true division.",
                "",
                [("edit_file", {"path": "calc.py", "old": "return a // b", "new": "return a / b"})],
            ),
            raw_completion("Run the tests.", "", [("bash", {"command": "python -m pytest -q"})]),
            raw_completion("They pass.", "divide now returns a float."),
        ],
    )
    agent = MmxAgent(Settings(backend="replay", replay=str(replay)), timeout=600)
    tasks = [synthetic_suite.task("mmx-evals__calc-1")]
    output = tmp_path / "out"
    options = RunOptions(output=output, repos_dir=synthetic_suite.repos_dir)
    summary = EvalRunner(tasks, agent, options).run()
    job = output / "run-1" / "mmx-evals__calc-1"
    assert summary["mean_resolve_rate"] == 1.0, (job / "test_output.txt").read_text()
    patch = (job / "patch.diff").read_text()
    assert "-    return a // b" in patch and "+    return a / b" in patch
    assert "__pycache__" not in patch and ".pytest_cache" not in patch  # the agent's test run left no noise
    events = [json.loads(line) for line in (job / "trajectory.jsonl").read_text().splitlines()]
    kinds = [event["type"] for event in events]
    assert kinds[0] == "session_start" and kinds[-1] == "final_result"
    assert kinds.count("tool_call") == 3 and events[-1]["status"] == "done"
    agent_record = json.loads((job / "agent.json").read_text())
    assert agent_record["status"] == "done" and agent_record["details"]["turns"] == 4

    trajectory_written = (job / "trajectory.jsonl").stat().st_mtime_ns
    again = EvalRunner(
        tasks, MmxAgent(Settings(backend="replay", replay=str(replay)), timeout=600), options
    ).run()
    assert again["mean_resolve_rate"] == 1.0 and again["jobs_run"] == 0
    assert (job / "trajectory.jsonl").stat().st_mtime_ns == trajectory_written  # the agent did not run again
