"""Base images without a registry: debootstrap a Debian root filesystem and `docker import` it.

Nothing is pulled: the packages come from the Debian mirror this machine's apt already uses, so
this works wherever `apt-get install` does (air-gapped machines with a local mirror included).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path

import docker
import docker.errors

from sandbox import labels
from sandbox.images import (
    BASE_REPOSITORY,
    GIB,
    ImageBuildError,
    Progress,
    check_free_disk,
    content_hash,
    image_exists,
    report_to_stderr,
)

SUITES = ("bookworm", "bullseye", "trixie")  # Python 3.11, 3.9, 3.13
DEFAULT_SUITE = "bookworm"
PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "python3-dev",  # headers, so env layers can build C extensions offline
    "git",
    "build-essential",
    "ripgrep",  # the search tools use it when present
    "procps",
    "patch",
)
RECIPE_VERSION = 1  # bump when the build steps below change what ends up in the image
DEFAULT_MIRROR = "http://deb.debian.org/debian"
NEEDED_DISK_BYTES = 3 * GIB  # root filesystem (~0.8 GiB) + the imported layer + margin
# Trimmed after debootstrap: package caches and indexes nobody needs inside a sandbox.
TRIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/man", "usr/share/info")
IMAGE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
PROGRESS_EVERY_SECONDS = 10.0


def base_image_tag(suite: str = DEFAULT_SUITE, extra_packages: tuple[str, ...] = ()) -> str:
    """The tag the base image of `suite` has, built or not (a hash of its recipe)."""
    _check_suite(suite)
    packages = sorted({*PACKAGES, *extra_packages})
    recipe = {"version": RECIPE_VERSION, "suite": suite, "variant": "minbase", "packages": packages}
    return f"{BASE_REPOSITORY}:{suite}-{content_hash(recipe)}"


def _check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise ImageBuildError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")


def default_mirror(
    sources_dirs: tuple[str, ...] = ("/etc/apt/sources.list.d",), sources_list: str = "/etc/apt/sources.list"
) -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources), else deb.debian.org."""
    candidates: list[str] = []
    for directory in sources_dirs:
        for path in sorted(Path(directory).glob("*.sources")) if os.path.isdir(directory) else []:
            candidates += re.findall(r"^URIs:\s*(\S+)", path.read_text(errors="replace"), flags=re.MULTILINE)
        for path in sorted(Path(directory).glob("*.list")) if os.path.isdir(directory) else []:
            candidates += re.findall(
                r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", path.read_text(errors="replace"), flags=re.MULTILINE
            )
    if os.path.isfile(sources_list):
        text = Path(sources_list).read_text(errors="replace")
        candidates += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.MULTILINE)
    for uri in candidates:
        # The main archive, not debian-security or a third-party repository.
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def ensure_base_image(
    client: docker.DockerClient,
    suite: str = DEFAULT_SUITE,
    *,
    mirror: str | None = None,
    rebuild: bool = False,
    progress: Progress = report_to_stderr,
    extra_packages: tuple[str, ...] = (),
) -> str:
    """The base image tag for `suite`, building it first when it is not on the engine yet.

    `extra_packages`: Debian packages beyond the usual set (a task's apt installs), in a base of their own.
    """
    for package in extra_packages:
        if not re.match(r"^[a-z0-9][a-z0-9+.-]+$", package):
            raise ImageBuildError(f"{package!r} is not a Debian package name")
    tag = base_image_tag(suite, extra_packages)
    if image_exists(client, tag) and not rebuild:
        progress(f"base image {tag} exists; reusing it")
        return tag
    _check_prerequisites()
    scratch_parent = "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()  # on disk, not tmpfs
    check_free_disk(client, NEEDED_DISK_BYTES, scratch_dir=scratch_parent, what=f"base image {tag}")
    mirror = mirror or default_mirror()
    scratch = tempfile.mkdtemp(prefix="mmx-base-", dir=scratch_parent)
    try:
        rootfs = os.path.join(scratch, "rootfs")
        started = time.monotonic()
        progress(f"building {tag}: debootstrap {suite} from {mirror} (takes a minute or two)")
        _debootstrap(suite, rootfs, mirror, progress, sorted({*PACKAGES, *extra_packages}))
        _trim(rootfs)
        progress(f"importing the root filesystem into Docker as {tag}")
        _import(client, rootfs, tag, suite)
        progress(f"built {tag} in {time.monotonic() - started:.0f} s")
    finally:
        _remove_scratch(scratch)
    return tag


def _check_prerequisites() -> None:
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed; install it with `apt-get install debootstrap`")
    if os.geteuid() != 0:
        raise ImageBuildError(
            "debootstrap needs root to build a root filesystem; run `sudo mmx-agent sandbox base` "
            "(once per machine: later runs reuse the image)"
        )


def _debootstrap(
    suite: str, rootfs: str, mirror: str, progress: Progress, packages: list[str] | tuple[str, ...] = PACKAGES
) -> None:
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, rootfs, mirror]
    recent: deque[str] = deque(maxlen=30)
    last_report = 0.0
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            recent.append(line)
            # Hundreds of per-package lines: show one now and then, and every warning or error.
            if line.startswith(("W:", "E:")) or time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
                progress(f"  {line}")
                last_report = time.monotonic()
    if proc.returncode != 0:
        log = "\n".join(recent)
        raise ImageBuildError(f"debootstrap {suite} from {mirror} failed (exit {proc.returncode}):\n{log}")


def _trim(rootfs: str) -> None:
    for relative in TRIMMED:
        directory = os.path.join(rootfs, relative)
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _import(client: docker.DockerClient, rootfs: str, tag: str, suite: str) -> None:
    repository, _, version = tag.partition(":")
    image_labels = labels.labels_for("base", **{labels.SUITE: suite, labels.RECIPE: version})
    changes = [f"ENV {variable}" for variable in IMAGE_ENV]
    changes += [f"LABEL {key}={value}" for key, value in image_labels.items()]
    changes.append('CMD ["bash"]')
    # Stream the tar straight into the engine: no second copy of the root filesystem on disk.
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
    try:
        client.api.import_image(
            src=tar.stdout, repository=repository, tag=version, changes=changes, stream_src=True
        )
    except docker.errors.APIError as e:
        raise ImageBuildError(f"docker import of {tag} failed: {e.explanation or e}") from e
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise ImageBuildError(f"tar of {rootfs} failed (exit {tar.returncode})")
    if not image_exists(client, tag):
        raise ImageBuildError(f"docker import finished but {tag} is not on the engine")


def _remove_scratch(scratch: str) -> None:
    # An interrupted debootstrap can leave /proc or /sys mounted inside the root filesystem;
    # unmount those before deleting, so the delete never walks into a live kernel filesystem.
    with open("/proc/mounts") as f:
        mounted = [line.split()[1] for line in f]
    for mount_point in sorted((m for m in mounted if m.startswith(scratch + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount_point], check=False)
    shutil.rmtree(scratch, ignore_errors=True)
