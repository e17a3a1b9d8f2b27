"""`eval run --ray` on a real Ray cluster of several nodes on this machine, each using the real Docker
engine: the same results as one machine, every job exactly once, a lost node and a killed head."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import labels
from tests.evals.test_docker_runner import CLI, RUN_SECONDS, cli

ray_cluster_utils = pytest.importorskip("ray.cluster_utils", reason="the fleet extra (ray) is not installed")

JOB_CPUS = 2
JOB_MEMORY = 4 * 2**30  # what a job asks for: the grading container's limits
OBJECT_STORE = 128 * 2**20
# A lost node is noticed within a few seconds, not Ray's default half minute.
FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 4,
}


class RayTestCluster:
    """A head that runs no jobs, and worker nodes advertising the `docker` resource."""

    def __init__(self) -> None:
        self.cluster = ray_cluster_utils.Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "include_dashboard": False,
                "object_store_memory": OBJECT_STORE,
                "_system_config": FAST_HEALTH_CHECKS,
            },
        )
        self.workers: list = []

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_docker_node(self):
        node = self.cluster.add_node(
            num_cpus=JOB_CPUS, memory=JOB_MEMORY, resources={"docker": 1}, object_store_memory=OBJECT_STORE
        )
        self.workers.append(node)
        return node

    def kill(self, node) -> None:
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)


@pytest.fixture(scope="module")
def ray_cluster(env_image):
    cluster = RayTestCluster()
    try:
        for _ in range(2):
            cluster.add_docker_node()
        yield cluster
    finally:
        cluster.cluster.shutdown()


def suite_args(synthetic_suite, output: Path, *more: str) -> list[str]:
    args = [str(synthetic_suite.suite), "--repos-dir", str(synthetic_suite.repos_dir)]
    return [*args, "--output", str(output), *more]


def job_events(output: Path) -> list[tuple[str, str]]:
    """(run, instance) of every graded event: a job graded twice shows up twice."""
    lines = (output / "events.jsonl").read_text().splitlines()
    return sorted((event["run"], event["instance_id"]) for event in map(json.loads, lines))


def every_job(synthetic_suite, runs: int) -> list[tuple[str, str]]:
    return sorted(
        (f"run-{run}", r["instance_id"]) for run in range(1, runs + 1) for r in synthetic_suite.records
    )


def without(data: dict, *keys: str) -> dict:
    return {k: v for k, v in data.items() if k not in keys}


def test_the_fleet_runs_every_job_once_with_the_results_of_one_machine(
    synthetic_suite, ray_cluster, tmp_path
):
    records = {r["instance_id"]: r for r in synthetic_suite.records}
    predictions = tmp_path / "preds.jsonl"
    rows = [  # one fix, one patch that does not apply, and no prediction for calc-1
        {"instance_id": "mmx-evals__textkit-1", "model_patch": records["mmx-evals__textkit-1"]["patch"]},
        {"instance_id": "mmx-evals__textkit-2", "model_patch": records["mmx-evals__calc-1"]["patch"]},
    ]
    predictions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    here, fleet = tmp_path / "workers", tmp_path / "fleet"
    common = ["--predictions", str(predictions), "--runs", "2"]
    local = cli("run", *suite_args(synthetic_suite, here, *common, "--workers", "2"))
    remote = cli("run", *suite_args(synthetic_suite, fleet, *common, "--ray", ray_cluster.address))

    timings = ("wall_seconds", "tasks_per_hour", "output")
    assert without(json.loads(remote.stdout), *timings) == without(json.loads(local.stdout), *timings)
    assert json.loads(remote.stdout)["resolved_runs_per_instance"] == {
        "mmx-evals__textkit-1": 2,
        "mmx-evals__textkit-2": 0,
        "mmx-evals__calc-1": 0,
    }
    assert job_events(fleet) == every_job(synthetic_suite, 2)
    for name in ("run-1/report.json", "run-2/report.json", "run-1/preds.json", "summary.md"):
        assert (fleet / name).read_text() == (here / name).read_text(), name
    for report in here.glob("run-*/*/report.json"):
        job = report.parent.relative_to(here)
        assert sorted(p.name for p in (fleet / job).iterdir()) == sorted(
            p.name for p in report.parent.iterdir()
        )
        assert (fleet / job / "report.json").read_text() == report.read_text()
        grading = [json.loads((out / job / "grading.json").read_text()) for out in (here, fleet)]
        assert [without(g, "graded_at", "duration_s") for g in grading[1:]] == [
            without(grading[0], "graded_at", "duration_s")
        ]
    assert "fleet: 2 node(s)" in remote.stderr and "jobs/hour" in remote.stderr

    # `auto`: the cluster this machine belongs to, which Ray finds by itself.
    again = json.loads(cli("run", *suite_args(synthetic_suite, fleet, *common, "--ray", "auto")).stdout)
    assert again["jobs_run"] == 0  # resumed: every job was done
    assert job_events(fleet) == every_job(synthetic_suite, 2)


def run_until_first_job_is_written(command: list[str], output: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    give_up_at = time.monotonic() + RUN_SECONDS
    while not list(output.glob("run-*/*/report.json")):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < give_up_at
        time.sleep(0.02)
    return process


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def running_containers_of_node(docker_client, node) -> list[dict]:
    """The node's running job containers: their owner is a Ray worker, a child of its raylet."""
    raylet = node.all_processes["raylet"][0].process.pid
    found = docker_client.api.containers(filters={"label": labels.OWNER, "status": "running"})
    owners = [(c, (c.get("Labels") or {})[labels.OWNER].split(":")) for c in found]
    return [
        c
        for c, owner in owners
        if len(owner) > 1 and owner[1].isdigit() and parent_pid(int(owner[1])) == raylet
    ]


def test_a_node_lost_mid_job_costs_no_job_and_repeats_none(
    synthetic_suite, ray_cluster, docker_client, tmp_path
):
    output = tmp_path / "out"
    command = [*CLI, "run", *suite_args(synthetic_suite, output, "--agent", "gold", "--runs", "3")]
    command += ["--ray", ray_cluster.address]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    victim = ray_cluster.workers[0]
    give_up_at = time.monotonic() + RUN_SECONDS
    while not running_containers_of_node(docker_client, victim):  # a job is mid-way on the victim
        assert run.poll() is None, run.communicate()[1][-3000:]
        assert time.monotonic() < give_up_at
        time.sleep(0.05)
    ray_cluster.kill(victim)  # its job is retried on the other node
    try:
        stdout, stderr = run.communicate(timeout=RUN_SECONDS)
    finally:
        ray_cluster.add_docker_node()  # the next test has two nodes again
    assert run.returncode == 0, stderr.decode()[-3000:]
    summary = json.loads(stdout)  # only the summary: what Ray tells of the lost node goes to stderr
    assert summary["mean_resolve_rate"] == 1.0 and summary["infra_failures"] == 0
    assert job_events(output) == every_job(synthetic_suite, 3)
    assert "fleet: 1 node(s)" in stderr.decode()  # the head saw the node go


def test_a_head_killed_mid_run_resumes_with_every_job_once(synthetic_suite, ray_cluster, tmp_path):
    output = tmp_path / "out"
    command = [*CLI, "run", *suite_args(synthetic_suite, output, "--agent", "gold", "--runs", "3")]
    command += ["--ray", ray_cluster.address]
    victim = run_until_first_job_is_written(command, output)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate()
    finished = {
        report.parent.relative_to(output): json.loads((report.parent / "grading.json").read_text())[
            "graded_at"
        ]
        for report in output.glob("run-*/*/report.json")
    }
    assert 1 <= len(finished) < 9  # killed in the middle of the run

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=RUN_SECONDS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)
    assert summary["mean_resolve_rate"] == 1.0 and summary["jobs_run"] == 9 - len(finished)
    for job, graded_at in finished.items():  # not graded again
        assert json.loads((output / job / "grading.json").read_text())["graded_at"] == graded_at
    assert job_events(output) == every_job(synthetic_suite, 3)


def test_a_cluster_that_cannot_be_reached_named_or_fit_is_a_usage_error(
    synthetic_suite, ray_cluster, tmp_path
):
    args = suite_args(synthetic_suite, tmp_path / "out", "--agent", "gold")
    too_big = cli("run", *args, "--memory", "64g", "--ray", ray_cluster.address, check_exit=2)
    assert "no Docker node of the Ray cluster has 2 CPU(s) and 64.0 GiB of memory" in too_big.stderr
    unreachable = cli("run", *args, "--ray", "127.0.0.1:9", check_exit=2)
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr and unreachable.stdout == ""
    bad_count = cli("run", *args, "--ray", "local:0", check_exit=2)
    assert "--ray local:N needs a node count of 1 or more" in bad_count.stderr


def test_without_ray_installed_the_error_names_the_extra(synthetic_suite, tmp_path):
    # Ray made unimportable in a real CLI process, as in an install without the fleet extra.
    script = "import sys; sys.modules['ray'] = None; from agent.app.cli import main; sys.exit(main())"
    args = [
        "eval",
        "run",
        *suite_args(synthetic_suite, tmp_path / "out", "--agent", "gold"),
        "--ray",
        "local",
    ]
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=RUN_SECONDS
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "pip install 'mmx-agent[fleet]'" in result.stderr and "Traceback" not in result.stderr


def processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, command line) of every process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        found[int(entry.name)] = (int(fields[1]), int(fields[3]), command)
    return found


def keeper_of(head: int) -> int | None:
    """The local cluster's keeper process that `head` started (its session holds the cluster)."""
    return next(
        (pid for pid, (ppid, _, cmd) in processes().items() if ppid == head and "evals.fleet_local" in cmd),
        None,
    )


def wait_until_gone(session: int) -> list[str]:
    """What is left of a session after a minute: nothing, once a local cluster is torn down."""
    give_up_at = time.monotonic() + 60
    while True:
        left = [cmd for _, sid, cmd in processes().values() if sid == session]
        if not left or time.monotonic() > give_up_at:
            return left
        time.sleep(0.2)


def test_a_local_cluster_is_torn_down_even_when_its_head_is_killed(synthetic_suite, env_image, tmp_path):
    output = tmp_path / "out"
    command = [*CLI, "run", *suite_args(synthetic_suite, output, "--agent", "gold", "--runs", "2")]
    command += ["--ray", "local:1"]
    victim = run_until_first_job_is_written(command, output)
    keeper = keeper_of(victim.pid)
    assert keeper is not None
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert wait_until_gone(keeper) == []  # no Ray process of the throwaway cluster outlives its head

    resumed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while (keeper := keeper_of(resumed.pid)) is None:
        assert resumed.poll() is None, resumed.communicate()[1][-3000:]
        time.sleep(0.1)
    stdout, stderr = resumed.communicate(timeout=RUN_SECONDS)
    assert resumed.returncode == 0, stderr[-3000:]
    assert json.loads(stdout)["mean_resolve_rate"] == 1.0
    assert job_events(output) == every_job(synthetic_suite, 2)
    assert wait_until_gone(keeper) == []
