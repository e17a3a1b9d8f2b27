"""Task environments as image layers, each keyed by a hash of what goes into it:

    base (Debian suite + Python)  ->  env (pinned pip requirements, a venv)  ->  instance

The instance layer holds the repository at the base commit in /testbed as ONE snapshot commit (no
other history, no remotes, no tags, so `git log --all` cannot show the future fix) with the task's
install commands run. Tasks with the same environment share the env image; tasks with the same
tree, environment and install commands share the instance image.

An environment derived from swebench's specs also gets the source tree's declared build backend
and dependencies in its wheelhouse (the official harness fetches them online), its Debian
packages in a base image of their own, and its pre-install commands run before the install.
With `--images swebench` the instance is instead SWE-bench's published image (published.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass

import docker
import docker.errors

from evals.declared_requirements import declared_requirements
from evals.sources import SourceTree, cache_root
from evals.swebench_specs import repository_requirements
from evals.task import Task
from sandbox import labels
from sandbox.base import SandboxError
from sandbox.base_image import ensure_base_image
from sandbox.docker import DockerSandbox, Limits
from sandbox.engine import connect
from sandbox.env_image import ensure_env_image
from sandbox.images import ImageBuildError, content_hash

INSTANCE_REPOSITORY = "mmx-agent-instance"
RECIPE_VERSION = 1  # bump when the build steps below change what ends up in the image
REPO_DIR = "/testbed"
SNAPSHOT_LABEL = "dev.mmx-agent.eval.snapshot"
BUILD_LIMITS = Limits(cpus=None, memory="4g", pids=4096, disk=None)  # the repository goes into the image
INSTALL_SECONDS = 1800.0
BUILD_API_SECONDS = 900  # committing a layer is one long request
SNAPSHOT_DATE = "2001-01-01T00:00:00+0000"  # fixed, so the snapshot commit id depends on content only
# Kept out of every diff taken in /testbed: caches that tests and installs leave behind.
GENERATED_PATTERNS = ("__pycache__/", "*.py[cod]", ".pytest_cache/", "*.egg-info/", ".eggs/")
GIT = "git -c core.hooksPath=/dev/null -c commit.gpgsign=false"
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/root"}
INSTALL_ENV = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
# A spec's `pip install -e .` builds with the backend already in the env (no index to fetch it from).
# pip reads this variable inverted: "0" turns build isolation off.
SPEC_INSTALL_ENV = {**INSTALL_ENV, "PIP_NO_BUILD_ISOLATION": "0"}

# Appends each NUL-separated path on stdin to .git/info/exclude as a pattern matching it alone.
EXCLUDE_LEFTOVERS = r"""
import sys
paths = sys.stdin.buffer.read().decode("utf-8", "surrogateescape").split("\0")
special = set("\\*?[!# ")
with open(".git/info/exclude", "a", encoding="utf-8", errors="surrogateescape") as exclude:
    for path in filter(None, paths):
        exclude.write("/" + "".join("\\" + c if c in special else c for c in path) + "\n")
"""

Progress = Callable[[str], None]
RELAXED_PINS_AT_MOST = 20
NO_WHEEL = re.compile(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;,]*)")


class EnvironmentBuildError(Exception):
    """An image could not be built: an infrastructure failure, not the agent's."""


@dataclass(frozen=True)
class InstanceImage:
    tag: str
    image_id: str  # the engine's content-addressed id: results are keyed by it
    snapshot_commit: str  # the one commit in /testbed
    activate: str = ""  # shell commands that turn the image's environment on (published images)


def instance_image_tag(env_image_id: str, task: Task, source: SourceTree) -> str:
    recipe = {
        "version": RECIPE_VERSION,
        "env": env_image_id,
        "tree": source.digest,
        "install": task.environment.install,
        "message": _snapshot_message(task, source),
    }
    if task.environment.pre_install:  # only then, so the tags of other tasks stay as they were
        recipe["pre_install"] = task.environment.pre_install
    if task.environment.spec:
        recipe["install_env"] = SPEC_INSTALL_ENV
    return f"{INSTANCE_REPOSITORY}:{content_hash(recipe)}"


def _snapshot_message(task: Task, source: SourceTree) -> str:
    where = task.base_commit or source.origin
    return f"{task.repo or 'repository'} at {where}"


class EnvironmentBuilder:
    """Builds (or finds) each task's images; safe to share between worker threads."""

    def __init__(self, progress: Progress = lambda message: None):
        self.progress = progress
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._failures: dict[str, str] = {}  # key -> why its build failed in this process
        self._done: dict[str, str] = {}  # key -> the tag built or found
        self._relaxed: dict[str, list[str]] = {}  # env key -> notes on the spec pins relaxed
        self._local = threading.local()

    def client(self) -> docker.DockerClient:
        """One engine connection per thread (docker-py clients are not meant to be shared)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = connect(timeout=BUILD_API_SECONDS)
        return client

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _once(self, key: str, build: Callable[[], str]) -> str:
        """Runs `build` once per key; the result, or the failure, is remembered for the process."""
        with self._lock(key):
            if key in self._failures:
                raise EnvironmentBuildError(self._failures[key])
            if key in self._done:
                return self._done[key]
            try:
                self._done[key] = build()
                return self._done[key]
            except (SandboxError, docker.errors.DockerException, EnvironmentBuildError) as e:
                self._failures[key] = str(e)
                raise EnvironmentBuildError(str(e)) from e

    def env_image(self, task: Task, extra_requirements: list[str] | tuple[str, ...] = ()) -> str:
        env = task.environment
        client = self.client()
        apt = tuple(sorted(env.apt))
        base = self._once(
            f"base:{env.debian_suite}:{apt}",
            lambda: ensure_base_image(client, env.debian_suite, progress=self.progress, extra_packages=apt),
        )
        pip = [*env.pip, *(r for r in extra_requirements if r not in env.pip)]
        key = f"env:{base}:{pip}"
        if not env.spec:
            return self._once(key, lambda: ensure_env_image(client, pip, base=base, progress=self.progress))
        tag = self._once(key, lambda: self._spec_env_image(client, key, pip, base))
        self._note(task, self._relaxed.get(key, []))
        return tag

    def _note(self, task: Task, notes: list[str]) -> None:
        """Differences from the official environment: kept with the task and said on the progress line."""
        for note in notes:
            if note not in task.environment.notes:
                task.environment.notes.append(note)
                self.progress(f"{task.instance_id}: environment: {note}")

    def _spec_env_image(self, client, key: str, pip: list[str], base: str) -> str:
        """A spec's pins, each one without a wheel for our Python relaxed to its newest patch release.

        The official harness builds such pins from source in conda; offline, only wheels are had.
        """
        notes = self._relaxed.setdefault(key, [])
        remembered = cache_root() / "relaxed-pins" / f"{content_hash({'key': key})}.json"
        if remembered.is_file():  # an earlier run found which pins have no wheel: skip the failed tries
            saved = json.loads(remembered.read_text())
            pip, notes[:] = saved["pip"], saved["notes"]
        for _ in range(RELAXED_PINS_AT_MOST):
            try:
                tag = ensure_env_image(client, pip, base=base, progress=self.progress)
                if notes and not remembered.is_file():
                    remembered.parent.mkdir(parents=True, exist_ok=True)
                    partial = remembered.with_name(f".{remembered.name}.{os.getpid()}")
                    partial.write_text(json.dumps({"pip": pip, "notes": notes}))
                    os.replace(partial, remembered)
                return tag
            except ImageBuildError as e:
                missing = NO_WHEEL.search(str(e))
                pinned = f"{missing[1]}=={missing[2]}".lower() if missing else None
                index = next((i for i, r in enumerate(pip) if r.replace(" ", "").lower() == pinned), None)
                if index is None:
                    raise
                pip = [*pip[:index], f"{missing[1]}~={missing[2]}", *pip[index + 1 :]]
                notes.append(
                    f"{missing[1]}=={missing[2]} has no wheel for this Python: "
                    f"{missing[1]}~={missing[2]} (the newest compatible release) is used"
                )
        raise EnvironmentBuildError(f"more than {RELAXED_PINS_AT_MOST} pins without a wheel: {pip}")

    def instance_image(self, task: Task, source: SourceTree) -> InstanceImage:
        extra: list[str] = []
        if task.environment.spec:  # the spec's install fetches these online; here they come first
            listed, listed_notes = repository_requirements(task, source.path)
            declared, notes = declared_requirements(source.path)
            extra = [*listed, *(r for r in declared if r not in listed)]
            self._note(task, listed_notes + notes)
        env_tag = self.env_image(task, extra)
        client = self.client()
        env_image = client.images.get(env_tag)
        tag = instance_image_tag(env_image.id, task, source)

        def build() -> str:
            try:
                client.images.get(tag)
                return tag
            except docker.errors.ImageNotFound:
                pass
            self.progress(f"building {tag} for {task.instance_id} ({source.origin})")
            self._build_instance(client, task, source, env_image, tag)
            return tag

        self._once(f"instance:{tag}", build)
        image = client.images.get(tag)
        return InstanceImage(tag, image.id, (image.labels or {}).get(SNAPSHOT_LABEL, ""))

    def published_image(self, task: Task) -> InstanceImage:
        """SWE-bench's published image for the task, with our thin layer (evals/published.py)."""
        from evals.published import published_instance  # it builds on this module: imported late

        client = self.client()
        return published_instance(client, task, self.progress)

    def _build_instance(self, client, task: Task, source: SourceTree, env_image, tag: str) -> None:
        with DockerSandbox.create(
            env_image.tags[0], root=REPO_DIR, limits=BUILD_LIMITS, client=client, image_build=True
        ) as box:
            box.copy_in(source.path, REPO_DIR)
            self._exec(box, self._snapshot_script(_snapshot_message(task, source)), "snapshot the repository")
            for command in task.environment.pre_install:
                self._exec(box, command, f"pre-install command {command!r}", timeout=INSTALL_SECONDS)
            install_env = SPEC_INSTALL_ENV if task.environment.spec else INSTALL_ENV
            for command in task.environment.install:
                self._exec(
                    box, command, f"install command {command!r}", env=install_env, timeout=INSTALL_SECONDS
                )
            self._exec(box, self._settle_script(), "record what the install left behind")
            snapshot = self._exec(box, f"{GIT} rev-parse HEAD", "read the snapshot commit").strip()
            commit_instance(client, box, tag, env_image, snapshot)

    @staticmethod
    def _snapshot_script(message: str) -> str:
        dated = f"GIT_AUTHOR_DATE={SNAPSHOT_DATE} GIT_COMMITTER_DATE={SNAPSHOT_DATE}"
        return "\n".join(
            [
                "set -e",
                f"{GIT} init -q",
                "rm -rf .git/hooks/* .git/description",
                f"{GIT} config user.name mmx-agent && {GIT} config user.email mmx-agent@localhost",
                f"{GIT} add -A -f",  # ignored files the source shipped are part of the base too
                f"{dated} {GIT} commit -q --no-verify --allow-empty -m {shlex.quote(message)}",
            ]
        )

    @staticmethod
    def _settle_script() -> str:
        """After the install: generated files stay out of diffs; tracked changes join the snapshot."""
        dated = f"GIT_AUTHOR_DATE={SNAPSHOT_DATE} GIT_COMMITTER_DATE={SNAPSHOT_DATE}"
        generated = "\n".join(GENERATED_PATTERNS)
        return "\n".join(
            [
                "set -e",
                f"printf '%s\\n' {shlex.quote(generated)} >> .git/info/exclude",
                # Untracked leftovers of the install (build dirs, egg-info, ...), path by path.
                f"{GIT} ls-files -z --others --exclude-standard --directory | python3 -I -c "
                + shlex.quote(EXCLUDE_LEFTOVERS),
                # An install that rewrote tracked files (a version file, say): fold that into the base.
                f'if [ -n "$({GIT} status --porcelain --untracked-files=no)" ]; then',
                f"  {GIT} add -u && {dated} {GIT} commit -q --no-verify --amend --no-edit",
                f"  {GIT} reflog expire --expire=now --all && {GIT} gc -q --prune=now",
                "fi",
            ]
        )

    def _exec(self, box: DockerSandbox, script: str, what: str, *, env=None, timeout: float = 600.0) -> str:
        result = box.exec(script, timeout=timeout, env={**GIT_ENV, **(env or {})}, max_output=200_000)
        if result.exit_code != 0:
            reason = "timed out" if result.timed_out else f"exit {result.exit_code}"
            if result.oom_killed:
                reason += ", out of memory"
            raise EnvironmentBuildError(f"cannot {what} ({reason}):\n{result.output.strip()[-3000:]}")
        return result.output


def commit_instance(
    client, box: DockerSandbox, tag: str, parent, snapshot: str, *, env: list[str] | None = None
) -> None:
    """Commit the build container as the instance image `tag`: the parent image's command, the
    repository as working directory, our labels (`env`: the environment, else the parent's)."""
    config = parent.attrs.get("Config") or {}
    repository, _, version = tag.partition(":")
    conf = {
        "Env": (config.get("Env") or []) if env is None else env,
        "Cmd": config.get("Cmd") or ["bash"],
        "WorkingDir": REPO_DIR,
        "OpenStdin": False,
        "StdinOnce": False,
        "Labels": {
            **labels.labels_for("instance", **{labels.RECIPE: version, labels.PARENT: parent.id}),
            SNAPSHOT_LABEL: snapshot,
            labels.OWNER: "",  # the build sandbox's owner label must not stick to the image
        },
    }
    try:
        client.api.commit(box.container_id, repository=repository, tag=version, conf=conf)
    except docker.errors.APIError as e:
        raise EnvironmentBuildError(f"cannot commit {tag}: {e.explanation or e}") from e
