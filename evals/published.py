"""`--images swebench`: the agent and the grader run in SWE-bench's published instance images.

Those images (swebench/sweb.eval.x86_64.<id>:latest, named by swebench's own TestSpec) hold the
repository in /testbed and a conda env `testbed` that `source /opt/miniconda3/bin/activate &&
conda activate testbed` turns on. One thin layer is added on top, once per image: BASH_ENV names
a file holding that activation, so every command the agent or the grader runs (each one a
`bash -c`) runs in the env, while our in-container helper keeps the image's own python3; the
files the install left behind are kept out of diffs; the commit the agent's diff is taken
against is recorded. The grading steps are the same as for our own images.

Nothing is pulled silently: an image that is not on the engine is pulled, and when no registry
answers the task fails to build with the reason and what to do.
"""

from __future__ import annotations

import shlex

import docker
import docker.errors

from evals.environments import (
    BUILD_API_SECONDS,
    EXCLUDE_LEFTOVERS,
    GENERATED_PATTERNS,
    GIT,
    GIT_ENV,
    REPO_DIR,
    SNAPSHOT_DATE,
    SNAPSHOT_LABEL,
    EnvironmentBuildError,
    InstanceImage,
    commit_instance,
)
from evals.swebench_specs import CONDA_ACTIVATE, SpecError, published_image
from evals.task import Task
from sandbox.docker import DockerSandbox, Limits
from sandbox.images import content_hash

LAYER_REPOSITORY = "mmx-agent-published"
LAYER_VERSION = 1  # bump when the layer's steps below change
LAYER_LIMITS = Limits(cpus=None, memory="4g", pids=4096, disk=None)
ACTIVATION_FILE = "/etc/mmx-agent-activate.sh"  # sourced by every non-interactive bash (BASH_ENV)


def _pull(client: docker.DockerClient, name: str, task: Task) -> None:
    try:
        client.images.get(name)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(name)
    except docker.errors.DockerException as e:
        raise EnvironmentBuildError(
            f"{name} is not on this Docker engine and cannot be pulled: `docker load` it (pull and "
            f"`docker save` it where a registry answers) or run without --images swebench\n"
            f"the pull of SWE-bench's published image for {task.instance_id} failed: {e}"
        ) from None


def published_instance(client: docker.DockerClient, task: Task, progress) -> InstanceImage:
    """The published image of `task` with our thin layer (built once), as an instance image."""
    try:
        name = published_image(task)
    except SpecError as e:
        raise EnvironmentBuildError(str(e)) from None
    _pull(client, name, task)
    published = client.images.get(name)
    tag = f"{LAYER_REPOSITORY}:{content_hash({'version': LAYER_VERSION, 'image': published.id})}"
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        progress(f"{task.instance_id}: adding the activated conda env to {name} as {tag}")
        _build_layer(client, name, published, tag)
        image = client.images.get(tag)
    return InstanceImage(tag, image.id, (image.labels or {}).get(SNAPSHOT_LABEL, ""), activate=CONDA_ACTIVATE)


def _exec(box: DockerSandbox, script: str, what: str, env=None) -> str:
    result = box.exec(script, timeout=BUILD_API_SECONDS, env={**GIT_ENV, **(env or {})}, max_output=1_000_000)
    if result.exit_code != 0:
        raise EnvironmentBuildError(f"cannot {what} in the published image (exit {result.exit_code}):\n"
                                    f"{result.output.strip()[-3000:]}")  # fmt: skip
    return result.output


def _build_layer(client: docker.DockerClient, name: str, published, tag: str) -> None:
    with DockerSandbox.create(
        name, root=REPO_DIR, limits=LAYER_LIMITS, client=client, image_build=True
    ) as box:
        _exec(box, f"{CONDA_ACTIVATE} && command -v python", "activate the testbed env")
        box.write_file(ACTIVATION_FILE, f"{CONDA_ACTIVATE}\n".encode())
        dated = f"GIT_AUTHOR_DATE={SNAPSHOT_DATE} GIT_COMMITTER_DATE={SNAPSHOT_DATE}"
        who = "-c user.name=mmx-agent -c user.email=mmx-agent@localhost"
        generated = "\n".join(GENERATED_PATTERNS)
        settle = "\n".join(
            [
                "set -e",
                f"cd {REPO_DIR}",
                f"printf '%s\\n' {shlex.quote(generated)} >> .git/info/exclude",
                # Untracked leftovers of the image's install stay out of every diff, path by path.
                f"{GIT} ls-files -z --others --exclude-standard --directory | python3 -I -c "
                + shlex.quote(EXCLUDE_LEFTOVERS),
                # Tracked files the install changed: part of the base the agent starts from.
                f'if [ -n "$({GIT} status --porcelain --untracked-files=no)" ]; then',
                f"  {dated} {GIT} {who} commit -q --no-verify -a -m 'the published image as installed'",
                "fi",
                f"{GIT} rev-parse HEAD",
            ]
        )
        snapshot = _exec(box, settle, "record the repository's state").strip().splitlines()[-1]
        config = published.attrs.get("Config") or {}
        env = [e for e in config.get("Env") or [] if not e.startswith("BASH_ENV=")]
        commit_instance(client, box, tag, published, snapshot, env=[*env, f"BASH_ENV={ACTIVATION_FILE}"])
