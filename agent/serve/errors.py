"""Errors as each API shapes them: OpenAI's `{"error": {...}}`, Anthropic's `{"type": "error", ...}`."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

# status -> (OpenAI type, OpenAI code, Anthropic type)
_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "invalid_request_error"),
    401: ("invalid_request_error", "invalid_api_key", "authentication_error"),
    404: ("invalid_request_error", "not_found", "not_found_error"),
    405: ("invalid_request_error", "method_not_allowed", "invalid_request_error"),
    413: ("invalid_request_error", "request_too_large", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded", "rate_limit_error"),
    500: ("server_error", None, "api_error"),
    503: ("service_unavailable_error", "model_loading", "overloaded_error"),
}


class APIError(Exception):
    """A request the server answers with an error; `status` is the HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def openai_body(error: APIError) -> dict[str, Any]:
    kind, code, _ = _KINDS.get(error.status, _KINDS[500])
    return {
        "error": {"message": error.message, "type": kind, "param": error.param, "code": error.code or code}
    }


def anthropic_body(error: APIError) -> dict[str, Any]:
    _, _, kind = _KINDS.get(error.status, _KINDS[500])
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def is_anthropic_path(path: str) -> bool:
    return path.startswith("/v1/messages")


def error_response(error: APIError, path: str) -> JSONResponse:
    body = anthropic_body(error) if is_anthropic_path(path) else openai_body(error)
    headers = {"retry-after": "1"} if error.status in (429, 503) else None
    return JSONResponse(body, status_code=error.status, headers=headers)
