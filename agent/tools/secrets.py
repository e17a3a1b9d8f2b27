"""Keeps credentials out of what the model and the logs see.

Values of environment variables whose names look like credentials are replaced in every tool
output by `[REDACTED:NAME]`. Short values are left alone: redacting "1" or "true" everywhere
would wreck ordinary text and protect nothing.

What it cannot see: secrets that are not in the environment (files, keychains), and transformed
copies of a value (base64, URL-encoded, split across lines).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

CREDENTIAL_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MIN_SECRET_LENGTH = 6


def secret_values(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """{value: variable name} for the credential-looking variables of `env` (default: ours)."""
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    for name, value in env.items():
        if CREDENTIAL_NAME.search(name) and len(value.strip()) >= MIN_SECRET_LENGTH:
            found.setdefault(value, name)
    return found


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    secrets = secret_values(env)
    # Longest first, so a value that contains another one is replaced whole.
    for value in sorted(secrets, key=len, reverse=True):
        if value in text:
            text = text.replace(value, f"[REDACTED:{secrets[value]}]")
    return text


def redact_data(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """`redact` applied to every string inside nested dicts and lists."""
    if isinstance(value, str):
        return redact(value, env)
    if isinstance(value, dict):
        return {k: redact_data(v, env) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v, env) for v in value]
    return value
