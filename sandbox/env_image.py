"""Env layers: a base image plus locked Python packages, installed with no network.

The wheels are downloaded on the host (`pip download`, for the container's Python, libc and
machine, not the host's), copied into a sandbox built from the base (network none, like every
container of ours), installed into a venv with `--no-index --find-links`, and the sandbox is
committed as the new image. No Dockerfile and no build network are involved, and the wheelhouse
does not stay behind in a layer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import docker
import docker.errors

from sandbox import labels
from sandbox.docker import DockerSandbox, Limits
from sandbox.engine import require_image
from sandbox.images import (
    ENV_REPOSITORY,
    GIB,
    ImageBuildError,
    Progress,
    check_free_disk,
    content_hash,
    image_exists,
    report_to_stderr,
)

RECIPE_VERSION = 1  # bump when the steps below change what ends up in the image
ENV_DIR = "/opt/env"  # the venv; first on PATH in the image
WHEELHOUSE_IN_CONTAINER = "/tmp/wheelhouse"
BUILD_LIMITS = Limits(cpus=None, memory="4g", pids=4096, disk=None)  # installs write to the image
INSTALL_SECONDS = 1800.0
NEEDED_DISK_BYTES = 1 * GIB  # before the download; then again three times the wheelhouse
PROBE = (
    "python3 -c 'import platform, sys; "
    "print(sys.version_info[0], sys.version_info[1], platform.machine(), *platform.libc_ver())'"
)


def requirement_lines(text: str) -> list[str]:
    """The meaningful lines of a requirements file (comments and blanks dropped), for hashing."""
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def env_image_tag(base_image_id: str, requirements: Sequence[str], pip_args: Sequence[str] = ()) -> str:
    recipe = {
        "version": RECIPE_VERSION,
        "base": base_image_id,
        "requirements": list(requirements),
        "pip_args": list(pip_args),
    }
    return f"{ENV_REPOSITORY}:{content_hash(recipe)}"


def ensure_env_image(
    client: docker.DockerClient,
    requirements: Sequence[str],
    *,
    base: str,
    pip_args: Sequence[str] = (),
    rebuild: bool = False,
    progress: Progress = report_to_stderr,
) -> str:
    """The env image for `requirements` (pinned, ideally: they are the lock) on `base`, built if absent.

    `pip_args` go to `pip download` (e.g. ["--find-links", "/wheels", "--no-index"] offline).
    """
    base_image = require_image(client, base)
    lines = requirement_lines("\n".join(requirements))
    tag = env_image_tag(base_image.id, lines, pip_args)
    if image_exists(client, tag) and not rebuild:
        progress(f"env image {tag} exists; reusing it")
        return tag
    scratch_parent = tempfile.gettempdir()
    check_free_disk(client, NEEDED_DISK_BYTES, scratch_dir=scratch_parent, what=f"env image {tag}")
    with (
        tempfile.TemporaryDirectory(prefix="mmx-env-") as scratch,
        DockerSandbox.create(base, root="/", limits=BUILD_LIMITS, client=client, image_build=True) as sandbox,
    ):
        target = _probe_target(sandbox)
        wheelhouse = Path(scratch, "wheelhouse")
        wheelhouse.mkdir()
        (wheelhouse / "requirements.txt").write_text("\n".join(lines) + "\n")
        progress(
            f"downloading wheels for Python {target['python']}, glibc {target['glibc']} into a wheelhouse"
        )
        _download(wheelhouse, target, pip_args)
        wheelhouse_bytes = sum(f.stat().st_size for f in wheelhouse.iterdir())
        check_free_disk(
            client, 3 * wheelhouse_bytes + GIB // 2, scratch_dir=scratch_parent, what=f"env image {tag}"
        )
        progress(f"installing {len(lines)} requirement(s) offline in a sandbox of {base}")
        sandbox.copy_in(wheelhouse, WHEELHOUSE_IN_CONTAINER)
        _install(sandbox)
        _commit(client, sandbox, tag, base_image)
    progress(f"built {tag}")
    return tag


def _probe_target(sandbox: DockerSandbox) -> dict[str, str]:
    result = sandbox.exec(PROBE, timeout=60)
    fields = result.output.split()
    if result.exit_code != 0 or len(fields) < 5 or fields[3] != "glibc":
        raise ImageBuildError(f"cannot tell the Python and glibc of {sandbox.image}: {result.output.strip()}")
    major, minor, machine, _, glibc = fields[:5]
    return {"python": f"{major}.{minor}", "python_tag": f"{major}{minor}", "glibc": glibc, "machine": machine}


def compatible_platforms(glibc: str, machine: str) -> list[str]:
    """Every platform tag a wheel for this glibc and machine may carry, newest first.

    pip does not expand `--platform manylinux_2_36_x86_64` to the older manylinux tags most
    wheels carry, so they are listed one by one.
    """
    major, minor = (int(part) for part in glibc.split(".")[:2])
    platforms = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)] if major == 2 else []
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}  # aliases of manylinux_2_N
    platforms += [f"{alias}_{machine}" for alias, needs in legacy.items() if major > 2 or minor >= needs]
    return [*platforms, f"linux_{machine}"]


def _download(wheelhouse: Path, target: dict[str, str], pip_args: Sequence[str]) -> None:
    command = [
        sys.executable, "-m", "pip", "download",
        "--disable-pip-version-check", "--progress-bar", "off",
        "--dest", str(wheelhouse),
        "--only-binary=:all:",  # wheels for another Python cannot be built here: binary only
        "--implementation", "cp",
        "--python-version", target["python_tag"],
        *(arg for platform in compatible_platforms(target["glibc"], target["machine"]) for arg in ("--platform", platform)),
        "-r", str(wheelhouse / "requirements.txt"),
        *pip_args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    if result.returncode != 0:
        raise ImageBuildError(
            f"pip download failed (wheels for Python {target['python']}, glibc {target['glibc']}):\n"
            f"{(result.stdout + result.stderr).strip()[-3000:]}"
        )


def _install(sandbox: DockerSandbox) -> None:
    script = (
        f"python3 -m venv {ENV_DIR} && "
        f"{ENV_DIR}/bin/pip install --disable-pip-version-check --no-cache-dir --no-index "
        f"--find-links {WHEELHOUSE_IN_CONTAINER} -r {WHEELHOUSE_IN_CONTAINER}/requirements.txt; "
        f"status=$?; rm -rf {WHEELHOUSE_IN_CONTAINER}; exit $status"
    )
    result = sandbox.exec(script, timeout=INSTALL_SECONDS)
    if result.exit_code != 0:
        reason = "timed out" if result.timed_out else f"exit {result.exit_code}"
        raise ImageBuildError(
            f"offline install in the sandbox failed ({reason}):\n{result.output.strip()[-3000:]}"
        )


def _commit(client: docker.DockerClient, sandbox: DockerSandbox, tag: str, base_image) -> None:
    base_config = base_image.attrs.get("Config") or {}
    base_env = [e for e in base_config.get("Env") or [] if not e.startswith(("PATH=", "VIRTUAL_ENV="))]
    base_path = next((e[5:] for e in base_config.get("Env") or [] if e.startswith("PATH=")), "/usr/bin:/bin")
    repository, _, version = tag.partition(":")
    # Commit merges the sandbox container's own settings (lifeline stdin, owner label, working
    # directory) into the image unless overridden here.
    config = {
        "Env": [*base_env, f"PATH={ENV_DIR}/bin:{base_path}", f"VIRTUAL_ENV={ENV_DIR}"],
        "Cmd": base_config.get("Cmd") or ["bash"],
        "WorkingDir": base_config.get("WorkingDir") or "/",
        "OpenStdin": False,
        "StdinOnce": False,
        "Labels": {
            **labels.labels_for("env", **{labels.RECIPE: version, labels.PARENT: base_image.id}),
            labels.OWNER: "",
        },
    }
    try:
        client.api.commit(sandbox.container_id, repository=repository, tag=version, conf=config)
    except docker.errors.APIError as e:
        raise ImageBuildError(f"cannot commit {tag}: {e.explanation or e}") from e
