"""`eval run --ray ADDRESS`: a run's jobs as Ray tasks on the nodes that have a Docker engine.

Each (run, task) job is one Ray task asking for the custom resource `docker` (a node advertises it
only where an engine runs) and for the CPUs and memory of the job's containers. On the node the job
runs as on one machine (evals/fleet_job.py); its folder travels both ways in the task's argument
and return value, and the head alone writes OUTPUT through the run store, so resuming, `--force`
and the grading keys behave as on one machine. A node lost mid-job: Ray runs the task again on
another node (max_retries) and the head keeps the first result per job. The head lost: its tasks
end with it, and the same command resumes from OUTPUT.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console

from evals.agents import AGENT_LIMITS, Agent
from evals.fleet_job import JobInput, JobOutput, run_job
from evals.fleet_local import DOCKER_RESOURCE, LocalClusterError, local_cluster
from evals.grading import DEFAULT_LIMITS, infra
from evals.runner import EvalRunner, JobResult, RunOptions
from evals.task import Task
from sandbox.docker import parse_size

RETRIES = 3  # runs of a job after its node or worker is lost
STATUS_SECONDS = 5.0  # how often the head looks at the cluster while no job finishes
CONNECT_SECONDS = 10.0
LOCAL_NODES = 2


class FleetError(ValueError):
    """The cluster cannot take the run (unreachable, no Docker nodes, Ray missing): a usage error."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FleetError("--ray needs Ray, which is not installed: pip install 'mmx-agent[fleet]'") from None
    return ray


@dataclass(frozen=True)
class Address:
    """Where the cluster is: Ray's own address (auto, ray://host:port, host:port), or a throwaway
    cluster of `local_nodes` nodes on this machine."""

    text: str
    local_nodes: int | None = None


def parse_address(text: str) -> Address:
    text = text.strip()
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2] or str(LOCAL_NODES)
        if not count.isdigit() or int(count) < 1:
            raise FleetError(f"--ray local:N needs a node count of 1 or more (got {text!r})")
        return Address(text, int(count))
    if not text:
        raise FleetError("--ray needs an address: auto, ray://host:port, host:port or local[:N]")
    return Address(text)


@dataclass(frozen=True)
class JobRequest:
    """What one job asks of a node: the most any of its containers may use at once."""

    cpus: float
    memory: int  # bytes

    @classmethod
    def of(cls, options: RunOptions, agent: Agent) -> JobRequest:
        limits = [options.limits or DEFAULT_LIMITS] + ([AGENT_LIMITS] if agent.runs_in_container else [])
        cpus = max((limit.cpus or 1.0) for limit in limits)
        memory = max(parse_size(limit.memory) if limit.memory else 2**30 for limit in limits)
        return cls(cpus, memory)

    def ray_options(self) -> dict[str, Any]:
        return {"num_cpus": self.cpus, "memory": self.memory, "resources": {DOCKER_RESOURCE: 1}}


def check_reachable(address: str) -> None:
    """Fails fast where Ray would wait minutes for a GCS that is not there."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise FleetError(f"--ray {address!r}: expected auto, ray://host:port, host:port or local[:N]")
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as e:
        raise FleetError(f"cannot reach the Ray cluster at {address}: {e}") from None


class FleetRunner(EvalRunner):
    """EvalRunner whose jobs run on a Ray cluster; reports and OUTPUT are written here, on the head."""

    def __init__(
        self,
        tasks: list[Task],
        agent: Agent,
        options: RunOptions,
        address: Address,
        *,
        console: Console | None = None,
    ):
        super().__init__(tasks, agent, options, console=console)
        self.address = address
        self.request = JobRequest.of(options, agent)
        self.ray = import_ray()

    def run(self) -> dict[str, Any]:
        # Ray prints what nodes log (a raylet's death, say) on stdout, which carries our JSON.
        with contextlib.redirect_stdout(sys.stderr), self._cluster() as address:
            self._connect(address)
            try:
                slots = self._check_nodes()
                self.options = replace(self.options, workers=slots)
                return super().run()
            finally:
                self.ray.shutdown()

    @contextlib.contextmanager
    def _cluster(self) -> Iterator[str]:
        if self.address.local_nodes is None:
            check_reachable(self.address.text)
            yield self.address.text
            return
        self.progress.message(f"starting a local Ray cluster of {self.address.local_nodes} node(s)")
        cpus = math.ceil(self.request.cpus)
        try:
            with local_cluster(self.address.local_nodes, cpus, self.request.memory) as address:
                yield address
        except LocalClusterError as e:
            raise FleetError(str(e)) from None

    def _connect(self, address: str) -> None:
        try:
            # log_to_driver: the nodes' messages (image builds, harness errors) show up here.
            self.ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ... for the same problem
            raise FleetError(f"cannot connect to the Ray cluster at {address}: {e}") from None

    def _docker_nodes(self) -> list[dict[str, Any]]:
        return [
            node
            for node in self.ray.nodes()
            if node.get("Alive") and (node.get("Resources") or {}).get(DOCKER_RESOURCE, 0) > 0
        ]

    def _check_nodes(self) -> int:
        """The number of jobs the cluster runs at once; a clear error where it can run none."""
        nodes = self._docker_nodes()
        if not nodes:
            raise FleetError(
                f"no node of the Ray cluster at {self.address.text} offers the {DOCKER_RESOURCE!r} "
                "resource: start each worker that has a Docker engine with "
                f"`ray start --address=HEAD:6379 --resources='{{\"{DOCKER_RESOURCE}\": 1}}'`"
            )
        fits = [
            node
            for node in nodes
            if node["Resources"].get("CPU", 0) >= self.request.cpus
            and node["Resources"].get("memory", 0) >= self.request.memory
        ]
        if not fits:
            raise FleetError(
                f"no Docker node of the Ray cluster has {self.request.cpus:g} CPU(s) and "
                f"{self.request.memory / 2**30:.1f} GiB of memory for one job (see --memory)"
            )
        slots = sum(
            int(
                min(
                    n["Resources"][DOCKER_RESOURCE],
                    n["Resources"]["CPU"] // self.request.cpus,
                    n["Resources"]["memory"] // self.request.memory,
                )
            )
            for n in fits
        )
        self.progress.message(
            f"fleet: {len(fits)} node(s) with Docker at {self.address.text}, {slots} job(s) at once"
        )
        return max(1, slots)

    # -- the jobs -------------------------------------------------------------------------------

    def _execute(self, jobs: list[tuple[int, Task]]) -> Iterator[JobResult]:
        remote = self.ray.remote(run_job).options(
            **self.request.ray_options(), max_retries=RETRIES, retry_exceptions=False
        )
        agent = self.ray.put(self.agent)
        waiting = list(reversed(jobs))
        pending: dict[Any, tuple[int, Task]] = {}
        written: set[tuple[int, str]] = set()
        status = FleetStatus(self, total=len(jobs))
        while waiting or pending:
            # A few jobs per slot in flight, not all: each carries its folder, read just before.
            while waiting and len(pending) < 2 * max(1, status.slots()) + 2:
                run, task = waiting.pop()
                folder = self.store.job(run, task.instance_id).files()
                pending[remote.remote(JobInput(run, task, self.options, folder), agent)] = (run, task)
            done, _ = self.ray.wait(list(pending), num_returns=1, timeout=STATUS_SECONDS)
            if done:  # and whatever else is ready by now
                done, _ = self.ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in done:
                run, task = pending.pop(ref)
                if (run, task.instance_id) in written:
                    continue  # a job's result is written once, whatever Ray delivers
                written.add((run, task.instance_id))
                result = self._collect(ref, run, task)
                yield result  # its verdict line first, then the fleet's
                status.finished(result)
            status.tick()

    def _collect(self, ref: Any, run: int, task: Task) -> JobResult:
        """The job's result, its folder written into OUTPUT; a job Ray gave up on is an
        infrastructure failure (the next run retries it)."""
        started = time.monotonic()
        try:
            output: JobOutput = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:  # our code failed outside the job function
            return self._failed(run, task, "harness", f"the job failed on its node: {e}", started)
        except self.ray.exceptions.RayError as e:  # lost worker or node, after every retry
            return self._failed(run, task, "fleet", f"the job's node or worker was lost: {e}", started)
        folder = self.store.job(run, task.instance_id)
        if folder.files() != output.files:
            folder.replace_files(output.files)
        for event in output.events:
            self.store.append_event(**event, node=output.node)
        return output.result

    def _failed(self, run: int, task: Task, kind: str, message: str, started: float) -> JobResult:
        grade = infra(task.instance_id, kind, message.splitlines()[0][:2000])
        self._save(self.store.job(run, task.instance_id), grade, key=None, instance=None)
        return JobResult(run, task.instance_id, False, grade.infra_failure, False, time.monotonic() - started)


class FleetStatus:
    """The head's progress lines: Docker nodes, running jobs, finished/total and jobs per hour."""

    def __init__(self, runner: FleetRunner, *, total: int):
        self.runner = runner
        self.total = total
        self.done = self.run = 0
        self.started = time.monotonic()
        self.nodes = -1

    def finished(self, result: JobResult) -> None:
        self.done += 1
        self.run += not result.cached
        self._print()

    def tick(self) -> None:
        if len(self.runner._docker_nodes()) != self.nodes:
            self._print()

    def slots(self) -> int:
        return int(self.runner.ray.cluster_resources().get(DOCKER_RESOURCE, 0))

    def _print(self) -> None:
        ray = self.runner.ray
        self.nodes = len(self.runner._docker_nodes())
        running = self.slots() - ray.available_resources().get(DOCKER_RESOURCE, 0)
        hours = (time.monotonic() - self.started) / 3600
        rate = f"{self.run / hours:.0f} jobs/hour" if self.run and hours > 0 else "- jobs/hour"
        self.runner.progress.message(
            f"fleet: {self.nodes} node(s), {running:.0f} running, {self.done}/{self.total} done, {rate}"
        )
