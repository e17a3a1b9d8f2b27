"""Connecting to the Docker engine, with errors that say what to do."""

from __future__ import annotations

import docker
import docker.errors

from sandbox.base import SandboxError


class DockerUnavailable(SandboxError):
    """No Docker engine answers (not installed, not running, or no permission on its socket)."""


class MissingImage(SandboxError):
    """The image a sandbox should start from is not on the engine (and cannot be pulled here)."""


def connect(timeout: int = 120) -> docker.DockerClient:
    """A client for the engine DOCKER_HOST names (default: the local socket), checked with a ping.

    `timeout` bounds one API request (raise it for image imports and commits).
    """
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as e:
        raise DockerUnavailable(
            f"cannot reach the Docker engine ({e}); start it (e.g. `dockerd --bridge=none &` or "
            "`systemctl start docker`) and check that you may use its socket"
        ) from e
    return client


def require_image(client: docker.DockerClient, image: str):
    """The image object; a MissingImage error naming how to build it when it is absent."""
    try:
        return client.images.get(image)
    except docker.errors.ImageNotFound:
        raise MissingImage(
            f"image {image!r} is not on this Docker engine and no registry is used; "
            "build the default base image with `mmx-agent sandbox base` (or pass an image you built)"
        ) from None
    except docker.errors.APIError as e:
        raise SandboxError(f"cannot inspect image {image!r}: {e.explanation or e}") from e
