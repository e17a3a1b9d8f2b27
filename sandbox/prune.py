"""Removing what crashed runs left behind: our containers whose owner process is gone, our volumes,
and (on request) our images. Containers of runs still alive are left alone unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import docker
import docker.errors

from sandbox import labels


@dataclass
class PruneReport:
    containers: list[str] = field(default_factory=list)  # removed (short ids)
    volumes: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # containers of live runs, left running
    errors: list[str] = field(default_factory=list)


def leftover_containers(
    client: docker.DockerClient, *, include_live: bool = False
) -> tuple[list[dict], list[dict]]:
    """Our containers split into (leftovers, those of live owners)."""
    leftovers, live = [], []
    for container in client.api.containers(all=True, filters=labels.PROJECT_FILTER):
        owner = (container.get("Labels") or {}).get(labels.OWNER)
        if not include_live and labels.owner_is_alive(owner):
            live.append(container)
        else:
            leftovers.append(container)
    return leftovers, live


def prune(
    client: docker.DockerClient, *, include_live: bool = False, include_images: bool = False
) -> PruneReport:
    report = PruneReport()
    leftovers, live = leftover_containers(client, include_live=include_live)
    report.kept = [c["Id"][:12] for c in live]
    for container in leftovers:
        try:
            client.api.remove_container(container["Id"], force=True, v=True)
            report.containers.append(container["Id"][:12])
        except docker.errors.NotFound:
            pass  # auto-remove got there first
        except docker.errors.APIError as e:
            if e.status_code == 409:  # removal already in progress
                report.containers.append(container["Id"][:12])
            else:
                report.errors.append(f"container {container['Id'][:12]}: {e.explanation or e}")
    for volume in client.volumes.list(filters=labels.PROJECT_FILTER):
        try:
            volume.remove(force=True)
            report.volumes.append(volume.name)
        except docker.errors.APIError as e:
            report.errors.append(f"volume {volume.name}: {e.explanation or e}")
    if include_images:
        _remove_images(client, report)
    return report


def _remove_images(client: docker.DockerClient, report: PruneReport) -> None:
    images = client.images.list(filters=labels.PROJECT_FILTER)
    # Layers on top first: an env image keeps its base from being removed.
    images.sort(key=lambda image: (image.labels or {}).get(labels.KIND) == "base")
    for image in images:
        name = (image.tags or [image.short_id])[0]
        try:
            client.images.remove(image.id, force=True)
            report.images.append(name)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as e:
            report.errors.append(f"image {name}: {e.explanation or e}")
