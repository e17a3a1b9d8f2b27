"""Fixtures for tests against the real Docker engine, and the session-end leak check.

Without an engine these tests skip locally (with the reason) but fail in CI (CI=true), where
.ci/run has started dockerd and built the base image. The fixtures live in tests/sandbox_kinds.py,
shared with the tool suites' docker variants.
"""

from __future__ import annotations

from tests.sandbox_kinds import base_image, docker_client

__all__ = ["base_image", "docker_client"]
