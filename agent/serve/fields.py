"""Reading a request body: JSON, then each field checked, with a 400 that names the field."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from agent.backends.base import GenerationParams
from agent.backends.local.backend import sampling_from
from agent.backends.local.generate import SamplingParams
from agent.json_limits import UnusableJson, loads_limited
from agent.serve.errors import APIError, bad_request

MAX_BODY_BYTES = 32 << 20


async def json_body(request: Request) -> dict[str, Any]:
    raw = bytearray()
    async for piece in request.stream():  # read no further than the limit: a huge body is refused early
        raw += piece
        if len(raw) > MAX_BODY_BYTES:
            raise APIError(413, f"the request body is over {MAX_BODY_BYTES >> 20} MiB")
    try:
        body = loads_limited(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None
    except UnusableJson as exc:
        raise bad_request(f"the request body cannot be used: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def number(body: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise bad_request(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}", name)
    return float(value)


def integer(body: dict[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
        raise bad_request(f"{name} must be an integer {bound}, got {value!r}", name)
    return value


def flag(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false, got {value!r}", name)
    return value


def stop_strings(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value) or len(value) > 16:
        raise bad_request(f"{name} must be a string or a list of up to 16 strings", name)
    return [s for s in value if s]


def sampling(body: dict[str, Any], defaults: SamplingParams) -> SamplingParams:
    """temperature 0 is greedy; top_k 0 or -1 means no top-k (vLLM's convention)."""
    top_k = integer(body, "top_k", -1)
    params = GenerationParams(
        temperature=number(body, "temperature", 0.0, 2.0),
        top_p=number(body, "top_p", 0.0, 1.0),
        top_k=0 if top_k == -1 else top_k,
        seed=integer(body, "seed", -(2**63), 2**63 - 1),
    )
    if params.top_p == 0.0:
        raise bad_request("top_p must be greater than 0", "top_p")
    return sampling_from(defaults, params)


def model_name(body: dict[str, Any], served: list[str]) -> str:
    name = body.get("model")
    if name is None:
        return served[0]  # OpenAI requires it; a missing name means this server's one model
    if not isinstance(name, str) or name not in served:
        raise APIError(
            400,
            f"the model {name!r} does not exist here; this server serves {', '.join(map(repr, served))}",
            param="model",
            code="model_not_found",
        )
    return name
