"""Which confinement this machine gives: bubblewrap, else Landlock, else none (with a loud warning).

Each is tried for real, once per process: bwrap by running `true` under the very options a
session uses, Landlock by asking the kernel for its ABI version. A setting (`confinement` in the
config, or MMX_AGENT_CONFINEMENT) can force one; forcing one that does not work is an error.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from sandbox.base import SandboxError
from sandbox.confinement import landlock
from sandbox.confinement.bwrap import BWRAP, bwrap_arguments

MODES = ("bwrap", "landlock", "none")
CHOICES = ("auto", *MODES)
ENV = "MMX_AGENT_CONFINEMENT"
NETWORKS = ("host", "none")
PROBE_SECONDS = 30
LANDLOCK_NET_ABI = 4  # TCP bind/connect rules


class ConfinementUnavailable(SandboxError):
    """The confinement asked for cannot be had on this machine."""


@dataclass(frozen=True)
class Confinement:
    mode: str  # bwrap | landlock | none
    detail: str  # what is in use ("bubblewrap 0.8.0"), or why nothing could be


def choose(requested: str | None = None, network: str = "host") -> Confinement:
    """The confinement for `requested` (auto | bwrap | landlock | none; None: $MMX_AGENT_CONFINEMENT,
    else auto) that can also enforce `network` (host | none)."""
    requested = requested or os.environ.get(ENV) or "auto"
    if requested not in CHOICES:
        raise ConfinementUnavailable(f"unknown confinement {requested!r}: use {', '.join(CHOICES)}")
    if network not in NETWORKS:
        raise ConfinementUnavailable(f"unknown network {network!r}: use host or none")
    if requested == "none":
        if network == "none":
            raise ConfinementUnavailable("network none needs a confinement (bwrap or landlock), not none")
        return Confinement("none", "chosen by the confinement setting")
    problems = []
    if requested in ("auto", "bwrap"):
        problem = bwrap_problem(network)
        if problem is None:
            return Confinement("bwrap", bwrap_version())
        if requested == "bwrap":
            raise ConfinementUnavailable(f"bwrap cannot confine commands on this machine: {problem}")
        problems.append(f"bwrap: {problem}")
    problem = landlock_problem(network)
    if problem is None:
        return Confinement("landlock", f"Landlock ABI {landlock.abi_version()}")
    if requested == "landlock":
        raise ConfinementUnavailable(f"Landlock cannot confine commands on this machine: {problem}")
    problems.append(f"Landlock: {problem}")
    if network == "none":
        raise ConfinementUnavailable(
            f"network none needs bwrap or Landlock, and neither works: {'; '.join(problems)}"
        )
    return Confinement("none", "; ".join(problems))


@functools.cache
def bwrap_problem(network: str) -> str | None:
    """None when bwrap runs a command with the session's options here; else why not."""
    if shutil.which(BWRAP) is None:
        return "bwrap is not installed (Debian: apt-get install bubblewrap)"
    probe_workspace = tempfile.mkdtemp(prefix="mmx-agent-bwrap-probe.")
    try:
        args = bwrap_arguments(probe_workspace, env={}, network=network)
        result = subprocess.run(
            [*args, "--", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_SECONDS,
            start_new_session=True,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap did not run: {e}"
    finally:
        os.rmdir(probe_workspace)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        return message[-1] if message else f"exit code {result.returncode}"
    return None


@functools.cache
def bwrap_version() -> str:
    try:
        found = subprocess.run([BWRAP, "--version"], capture_output=True, text=True, timeout=PROBE_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return "bwrap"
    return found.stdout.strip() or "bwrap"


@functools.cache
def landlock_problem(network: str) -> str | None:
    try:
        abi = landlock.abi_version()
    except OSError as e:
        return f"the kernel refused the version query: {e}"
    if abi < 1:
        return "the kernel has no Landlock (Linux 5.13+, with landlock in its LSM list)"
    if network == "none" and abi < LANDLOCK_NET_ABI:
        return f"network none needs Landlock ABI {LANDLOCK_NET_ABI} (Linux 6.7+); this kernel has ABI {abi}"
    return None
