"""Every exit status the CLI documents (docs/cli.md), in one place."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # the run failed, or something unexpected went wrong
    USAGE = 2  # bad flags, settings or arguments
    LIMIT = 3  # a turn, token, cost or time limit, a detected loop, or an exhausted context
    NO_DOCKER = 3  # `mmx-agent eval`: no Docker engine to run the tasks in
    BLOCKED = 4  # the permission policy refused what the task needed
    BACKEND_UNAVAILABLE = 5
    UNVERIFIED = 6  # --require-verified: our verification failed or could not run
    CANCELLED = 130  # as a shell reports SIGINT


STATUS_EXIT = {
    "done": ExitCode.OK,
    "error": ExitCode.ERROR,
    "usage_error": ExitCode.USAGE,
    "limit_reached": ExitCode.LIMIT,
    "loop_detected": ExitCode.LIMIT,
    "context_exhausted": ExitCode.LIMIT,
    "blocked": ExitCode.BLOCKED,
    "backend_unavailable": ExitCode.BACKEND_UNAVAILABLE,
    "unverified": ExitCode.UNVERIFIED,
    "invalid_output": ExitCode.ERROR,  # --json-schema: the final answer never validated
    "cancelled": ExitCode.CANCELLED,
}


def exit_code_for(status: str) -> ExitCode:
    """The exit status of a run that ended with `status` (a status we do not know is an error)."""
    return STATUS_EXIT.get(status, ExitCode.ERROR)
