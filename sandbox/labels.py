"""The labels every container and image of ours carries, and who owns a container.

The project label is how `mmx-agent sandbox prune` and the tests find our leftovers without ever
touching anything else on the engine. The owner label (host, pid, process start time) tells a
container of a live run from one a crashed run left behind.
"""

from __future__ import annotations

import os
import socket

PROJECT = "dev.mmx-agent"  # present on everything we create; the value is always "1"
KIND = "dev.mmx-agent.kind"  # sandbox | base | env
OWNER = "dev.mmx-agent.owner"  # host:pid:start-time of the process that created a container
SUITE = "dev.mmx-agent.suite"  # Debian suite of a base image
RECIPE = "dev.mmx-agent.recipe"  # content hash an image is tagged by
PARENT = "dev.mmx-agent.parent"  # image an env layer was built on

PROJECT_FILTER = {"label": f"{PROJECT}=1"}


def _process_start_time(pid: int) -> str:
    """Start time in clock ticks since boot, so a recycled pid does not pass for its owner."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) may contain spaces; fields after it are fixed.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start_time(pid)}"


def owner_is_alive(owner: str | None) -> bool:
    """Whether the process that created a container still runs (containers of other hosts count as alive)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, start_time = rest.partition(":")
    if host != socket.gethostname():
        return True  # cannot tell from here: leave it to that host
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return start_time == "?" or _process_start_time(pid) == start_time


def labels_for(kind: str, **extra: str) -> dict[str, str]:
    labels = {PROJECT: "1", KIND: kind, **extra}
    if kind == "sandbox":
        labels[OWNER] = owner_id()
    return labels
