"""What every route shares: the model once loaded, the served names, the API key, the signing key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from agent.backends.local.generate import SamplingParams
from agent.serve import fields
from agent.serve.errors import APIError, bad_request, is_anthropic_path
from agent.serve.generation import Run
from agent.serve.host import ContextLengthError, EngineRequest, ModelHost, QueueFull


class ServerState:
    def __init__(self, served_names: list[str], api_key: str | None = None) -> None:
        self.served_names = served_names
        self.api_key = api_key
        self.host: ModelHost | None = None  # None until the model has loaded
        self.created = int(time.time())
        # Thinking blocks are signed with a key that lives as long as this server: a block signed by
        # another server, or edited by the client, does not verify.
        self._signing_key = os.urandom(32)

    def require_host(self) -> ModelHost:
        if self.host is None:
            raise APIError(503, "the model is still loading; try again shortly")
        return self.host

    def authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = None
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if is_anthropic_path(request.url.path) and request.headers.get("x-api-key"):
            given = request.headers["x-api-key"]
        if given is None:
            where = (
                "x-api-key or Authorization: Bearer"
                if is_anthropic_path(request.url.path)
                else "Authorization: Bearer"
            )
            raise APIError(401, f"no API key: send it as {where}")
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise APIError(401, "the API key is not valid for this server")

    def sign(self, thinking: str) -> str:
        digest = hmac.new(self._signing_key, thinking.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    def verify(self, thinking: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(thinking).encode(), signature.encode("utf-8", "replace"))


def start_run(
    host: ModelHost,
    ids: list[int],
    asked: int | None,
    sampling: SamplingParams,
    *,
    stop: list[str] | None = None,
    tools: list[dict] | None = None,
    parse: bool = True,
    ignore_eos: bool = False,
) -> Run:
    """Submit a request to the engine (400 when it does not fit, 429 when the queue is full)."""
    if not ids:
        raise bad_request("the prompt is empty")
    if len(ids) >= host.context_window:
        raise bad_request(
            f"the prompt is {len(ids)} tokens; this model's context is {host.context_window} tokens, "
            "with no room left to generate",
            code="context_length_exceeded",
        )
    request = EngineRequest(
        prompt_ids=ids,
        max_new_tokens=host.max_new_tokens(len(ids), asked),
        sampling=sampling,
        stop_ids=() if ignore_eos else (host.tokenizer.eos_id,),
    )
    try:
        stream = host.submit(request)
    except QueueFull as exc:
        raise APIError(429, f"the server is busy: {exc}; try again shortly") from None
    except ContextLengthError as exc:
        raise bad_request(str(exc), code="context_length_exceeded") from None
    return Run(stream, host.tokenizer, stop=stop, parse=parse, tools=tools)


@dataclass
class Opened:
    """A request that passed what every model route checks first."""

    state: ServerState
    body: dict[str, Any]
    model: str
    host: ModelHost


async def open_request(request: Request) -> Opened:
    """Key, JSON body, model name, a loaded model: in that order, each failing in the API's own shape."""
    state: ServerState = request.app.state.server
    state.authorize(request)
    body = await fields.json_body(request)
    model = fields.model_name(body, state.served_names)
    return Opened(state, body, model, state.require_host())
