"""The ASGI app: routes, and every failure turned into the calling API's own error shape."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.serve import anthropic_api, openai_api
from agent.serve.errors import APIError, error_response
from agent.serve.state import ServerState

log = logging.getLogger("mmx_agent.serve")


async def health(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    if state.host is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ok", **state.host.describe(), "engine": state.host.engine.stats()})


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc, request.url.path)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = {
        404: f"no route {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }
    return error_response(
        APIError(exc.status_code, message.get(exc.status_code, exc.detail)), request.url.path
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s", request.url.path, exc_info=exc)
    return error_response(APIError(500, f"internal error: {type(exc).__name__}: {exc}"), request.url.path)


def build_app(state: ServerState) -> Starlette:
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", openai_api.list_models, methods=["GET"]),
        Route("/v1/chat/completions", openai_api.chat_completions, methods=["POST"]),
        Route("/v1/completions", openai_api.completions, methods=["POST"]),
        Route("/tokenize", openai_api.tokenize, methods=["POST"]),
        Route("/v1/messages", anthropic_api.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", anthropic_api.count_tokens, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={APIError: _api_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.server = state
    return app
