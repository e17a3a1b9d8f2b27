"""What base and env images have in common: content-hash tags, the free-disk check, the listing.

Images are layered by content hash (see docs/evals.md): base (Debian suite + Python, built with
debootstrap) -> env (locked Python packages, installed offline). A tag is the hash of everything
that goes into an image, so an existing tag means there is nothing to build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import docker
import docker.errors

from sandbox import labels
from sandbox.base import SandboxError

BASE_REPOSITORY = "mmx-agent-base"
ENV_REPOSITORY = "mmx-agent-env"
GIB = 1 << 30

Progress = Callable[[str], None]


class ImageBuildError(SandboxError):
    """Building an image failed (missing tool, no disk, a failed step); the message says which."""


def report_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def content_hash(recipe: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-able recipe."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def check_free_disk(client: docker.DockerClient, needed_bytes: int, *, scratch_dir: str, what: str) -> None:
    """Fails early, with numbers, when the scratch directory or Docker's data root lacks space."""
    places = [scratch_dir]
    docker_root = _docker_root_dir(client)
    if docker_root and os.path.isdir(docker_root):  # only visible when the engine runs on this machine
        places.append(docker_root)
    for place in places:
        free = shutil.disk_usage(place).free
        if free < needed_bytes:
            raise ImageBuildError(
                f"not enough free disk to build {what}: {free / GIB:.1f} GiB free on {place}, "
                f"about {needed_bytes / GIB:.1f} GiB needed; free some space (`mmx-agent sandbox prune "
                "--images` removes our images, `docker system prune` the engine's unused data)"
            )


def _docker_root_dir(client: docker.DockerClient) -> str | None:
    try:
        return client.info().get("DockerRootDir")
    except docker.errors.APIError:
        return None


@dataclass
class ImageSummary:
    tag: str
    kind: str  # base | env
    size: int  # bytes, with the layers it shares with its parent
    layer_size: int  # bytes of its own layer
    created: str
    id: str
    parent: str  # the image an env layer was built on ("" for a base)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def list_images(client: docker.DockerClient) -> list[ImageSummary]:
    """Our images (project label), bases first, each with its total and own-layer size."""
    images = client.images.list(filters=labels.PROJECT_FILTER)
    sizes_by_id = {image.id: image.attrs.get("Size", 0) for image in images}
    summaries = []
    for image in images:
        image_labels = image.labels or {}
        parent = image_labels.get(labels.PARENT, "")
        size = image.attrs.get("Size", 0)
        for tag in image.tags or [image.short_id]:
            summaries.append(
                ImageSummary(
                    tag=tag,
                    kind=image_labels.get(labels.KIND, "?"),
                    size=size,
                    layer_size=size - sizes_by_id.get(parent, 0) if parent else size,
                    created=image.attrs.get("Created", "")[:19].replace("T", " "),
                    id=image.short_id.removeprefix("sha256:"),
                    parent=parent,
                )
            )
    return sorted(summaries, key=lambda s: (s.kind != "base", s.tag))
