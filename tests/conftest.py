"""Suite-wide hygiene: the Docker images the tests build (env and instance layers) go when the run ends.

The base image stays (every run needs it and .ci/run builds it once per machine); images that existed
before the run are left alone, so a developer's own eval images survive `pytest`. Several test runs
sharing one engine at once set MMX_AGENT_KEEP_TEST_IMAGES=1 (each would remove the others' images).
"""

from __future__ import annotations

import os
import time

SESSION_STARTED = time.time()


def pytest_sessionfinish(session, exitstatus) -> None:
    if os.environ.get("MMX_AGENT_KEEP_TEST_IMAGES"):
        return
    try:
        import docker

        from sandbox import labels

        client = docker.from_env(timeout=120)
        images = client.images.list(filters=labels.PROJECT_FILTER)
    except Exception:  # noqa: BLE001 - no engine (or no docker package): nothing was built
        return
    made_here = [
        image
        for image in images
        if (image.labels or {}).get(labels.KIND) != "base"
        and image.attrs.get("Created", "") >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(SESSION_STARTED))
    ]
    # Layers on top first: an instance image keeps its env image from being removed.
    made_here.sort(key=lambda image: (image.labels or {}).get(labels.KIND) != "instance")
    for image in made_here:
        try:
            client.images.remove(image.id, force=True)
        except docker.errors.APIError:
            pass  # already gone, or in use by a container that is being removed
