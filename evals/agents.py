"""Who produces the candidate patch: the mmx agent, the gold patch, nothing, or a predictions file.

`gold` validates the harness and the suite (every task should resolve); `empty` submits the base
unchanged (no task should resolve); `predictions` grades patches made elsewhere, in SWE-bench's
format. `mmx` runs the real agent loop with its tools executing inside the task's container.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import docker

from agent.config import Settings
from agent.events import event_to_json, json_text
from agent.session_setup import make_backend, start_session
from evals.environments import GIT_ENV, REPO_DIR, InstanceImage
from evals.infra_failure import InfraFailure
from evals.task import Task
from sandbox.base import SandboxError
from sandbox.docker import DockerSandbox, Limits

AGENT_LIMITS = Limits(cpus=2.0, memory="4g", pids=2048, disk=None)  # the repository lives in the image
DIFF_FILE = "/var/tmp/mmx-eval-agent.diff"
PROMPT = """\
<uploaded_files>
{repo_dir}
</uploaded_files>
The repository {repo} is checked out in {repo_dir}. Resolve the issue below by changing the \
repository's non-test source files so that its behaviour matches what the issue asks for.

<issue>
{problem_statement}
</issue>

Work only in {repo_dir}. Tests of your own are welcome while you work, but the change is judged by \
hidden tests: do not edit existing tests to make them pass. Keep the change minimal and focused. \
When you are done, reply with a short summary of the change."""


NO_PREDICTION = "no_prediction"  # the status of a task the predictions file does not mention


class PredictionsError(ValueError):
    """The predictions file cannot be read."""


@dataclass
class AgentOutput:
    patch: str | None  # None: the agent submitted nothing (SWE-bench's patch_is_None)
    status: str  # done | limit_reached | error | ... (the agent's own exit status) | submitted
    infra_failure: InfraFailure | None = None  # the run failed for reasons not the model's
    details: dict[str, Any] = field(default_factory=dict)  # turns, usage, cost, duration


class Agent(Protocol):
    name: str  # model_name_or_path in predictions and reports
    runs_in_container: bool  # needs the instance image before it can answer

    def fingerprint(self, task: Task) -> str:
        """What determines this agent's answer for `task`: a changed fingerprint means a new answer."""

    def solve(
        self, task: Task, instance: InstanceImage | None, workdir: Path, client: docker.DockerClient
    ) -> AgentOutput: ...


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class GoldAgent:
    name = "gold"
    runs_in_container = False

    def fingerprint(self, task: Task) -> str:
        return _sha(task.patch)

    def solve(self, task, instance, workdir, client) -> AgentOutput:
        return AgentOutput(task.patch, "submitted")


class EmptyAgent:
    name = "empty"
    runs_in_container = False

    def fingerprint(self, task: Task) -> str:
        return _sha("")

    def solve(self, task, instance, workdir, client) -> AgentOutput:
        return AgentOutput("", "submitted")


def load_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """SWE-bench predictions by instance id, from a JSON list, a JSON dict by id, or JSON lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PredictionsError(f"cannot read {path}: {e}") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise PredictionsError(f"{path}: neither JSON nor JSON lines ({e.msg})") from None
    if isinstance(data, dict):
        if "instance_id" in data and "model_patch" in data:
            data = [data]
        else:
            data = [dict(value, instance_id=value.get("instance_id", key)) for key, value in data.items()]
    if not isinstance(data, list):
        raise PredictionsError(
            f"{path}: expected a list of predictions, a dict by instance id, or JSON lines"
        )
    predictions: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("instance_id"), str):
            raise PredictionsError(f"{path}: prediction {index} has no instance_id")
        patch = item.get("model_patch")
        if patch is not None and not isinstance(patch, str):
            raise PredictionsError(
                f"{path}: prediction {item['instance_id']}: model_patch must be a string or null"
            )
        predictions[item["instance_id"]] = item
    return predictions


class PredictionsAgent:
    runs_in_container = False

    def __init__(self, predictions: dict[str, dict[str, Any]], name: str | None = None):
        self.predictions = predictions
        names = {
            str(p.get("model_name_or_path")) for p in predictions.values() if p.get("model_name_or_path")
        }
        self.name = name or (names.pop() if len(names) == 1 else "predictions")

    def _patch(self, task: Task) -> str | None:
        return (self.predictions.get(task.instance_id) or {}).get("model_patch")

    def fingerprint(self, task: Task) -> str:
        patch = self._patch(task)
        return "none" if patch is None else _sha(patch)

    def solve(self, task, instance, workdir, client) -> AgentOutput:
        if task.instance_id not in self.predictions:
            return AgentOutput(None, NO_PREDICTION)
        return AgentOutput(self._patch(task), "submitted")


class MmxAgent:
    """The real agent loop (the configured backend), its tools running in the task's container."""

    runs_in_container = True

    def __init__(self, settings: Settings, *, timeout: float):
        self.timeout = timeout
        # No one answers permission prompts in an eval; the container is the boundary (no network).
        self.settings = settings.model_copy(
            update={"permission_mode": "full-auto", "sandbox": "docker", "max_wall_seconds": timeout}
        )
        self.name = f"mmx-agent/{self.settings.backend}/{self.settings.model or 'default'}"
        make_backend(self.settings)  # fail now, with the backend's own message, not once per task

    def fingerprint(self, task: Task) -> str:
        settings = self.settings.model_dump(exclude={"api_key_env"})
        replay = self.settings.replay
        if replay and Path(replay).is_file():
            settings["replay_sha"] = _sha(Path(replay).read_text(encoding="utf-8", errors="replace"))
        return _sha(json.dumps([settings, task.problem_statement], sort_keys=True, default=str))

    def solve(self, task, instance, workdir, client) -> AgentOutput:
        assert instance is not None
        trajectory = workdir / "trajectory.jsonl"
        lock = threading.Lock()
        box = DockerSandbox.create(instance.tag, root=REPO_DIR, limits=AGENT_LIMITS, client=client)
        try:
            with trajectory.open("w", encoding="utf-8") as out:

                def emit(event: Any) -> None:  # the trajectory is the event stream, saved as it happens
                    with lock:
                        out.write(json_text(event_to_json(event), default=str) + "\n")
                        out.flush()

                session = start_session(
                    self.settings, Path(REPO_DIR), interactive=False, emit=emit, sandbox=box
                )
                try:
                    started = time.monotonic()
                    prompt = PROMPT.format(
                        repo=task.repo or "repository",
                        repo_dir=REPO_DIR,
                        problem_statement=task.problem_statement,
                    )
                    result = session.run(prompt)  # redacted, like the trajectory
                    patch = self._diff(box, instance)
                    if patch is not None:
                        patch = session.redactor.redact(patch)  # the patch is written and graded as is
                finally:
                    session.close()
        finally:
            box.close()  # also when the session could not start
        details = {
            "turns": result.turns,
            "usage": result.usage,
            "cost": result.cost,
            "duration_s": round(time.monotonic() - started, 3),
            "session_id": result.session_id,
            "result": result.result[-2000:],
        }
        failure = None
        if result.status == "backend_unavailable":
            failure = InfraFailure("backend", f"the model backend failed: {result.result[-500:]}")
        if patch is None:
            details["diff_error"] = "the repository's git state is unreadable after the run"
        return AgentOutput(patch, result.status, failure, details)

    @staticmethod
    def _diff(box: DockerSandbox, instance: InstanceImage) -> str | None:
        """Everything the agent changed in the repository, against the snapshot commit (not HEAD:
        the agent may have committed)."""
        git = "git -c core.hooksPath=/dev/null -c core.quotepath=false"
        script = (
            # A fresh index made from the snapshot: the agent may have staged, committed or reset.
            f"set -e; cd {REPO_DIR}; export GIT_INDEX_FILE=/var/tmp/mmx-eval-agent.index; rm -f $GIT_INDEX_FILE; "
            f"{git} read-tree {instance.snapshot_commit}; {git} add -A .; "
            f"{git} diff --cached --binary --full-index --no-color --no-ext-diff --no-textconv --no-renames "
            f"--src-prefix=a/ --dst-prefix=b/ {instance.snapshot_commit} > {DIFF_FILE}; rm -f $GIT_INDEX_FILE"
        )
        try:
            result = box.exec(script, timeout=600, env=GIT_ENV)
            if result.exit_code != 0:
                return None
            return box.read_file(DIFF_FILE).decode("utf-8", "surrogateescape")
        except SandboxError:
            return None


def make_agent(
    kind: str, *, settings: Settings | None = None, predictions: Path | None = None, timeout: float
) -> Agent:
    if predictions is not None:
        return PredictionsAgent(load_predictions(predictions))
    if kind == "gold":
        return GoldAgent()
    if kind == "empty":
        return EmptyAgent()
    if kind == "mmx":
        return MmxAgent(settings or Settings(), timeout=timeout)
    raise ValueError(f"unknown agent {kind!r}: use mmx, gold or empty (or --predictions FILE)")
