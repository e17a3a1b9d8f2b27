"""What every remote backend shares: the HTTP client, keys, and a round retried as a whole.

A round is one streamed request. If it fails in a way a fresh try may not (429, overloaded 5xx, a
connection reset, a read timeout, a stream cut or garbled midway), the backend says so with a
RoundRetry event (consumers drop what they got of the round), waits, and streams the round again
from scratch. Other failures, and the last one of the budget, are a BackendError.

Subclasses say how to build the request body and how to decode the stream (a StreamDecoder).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import ssl
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from agent.backends.base import (
    M2_TEMPERATURE,
    M2_TOP_K,
    M2_TOP_P,
    BackendError,
    GenerationParams,
    PromptTooLong,
)
from agent.backends.events import BackendEvent, ReasoningDelta, RoundRetry, StreamEnd, Usage
from agent.backends.m2.render import RenderError, render_prompt
from agent.backends.messages import Message
from agent.backends.remote.context_errors import context_rejection
from agent.backends.remote.keys import ApiKey, scrub
from agent.backends.remote.pricing import Price, lookup_price, price_table
from agent.backends.remote.reasoning_forms import ReasoningMemory
from agent.backends.remote.retry import RetryableError, RetryPolicy, is_retryable_status, parse_retry_after
from agent.backends.remote.sse import MalformedChunk, SseEvent, iter_sse
from agent.backends.remote.token_count import PromptTokens, load_tokenizer

log = logging.getLogger("agent.backends.remote")

M2_CONTEXT = 196_608
M27_CONTEXT = 204_800
_ERROR_BODY_LIMIT = 64_000


class EndpointError(Exception):
    """The endpoint answered with an error that a retry will not fix (bad request, bad key...)."""

    def __init__(self, message: str, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth  # the endpoint refused the credentials


@dataclass
class Timeouts:
    connect: float = 10.0
    read: float = 300.0  # longest silence between two bytes: a long prompt's prefill can take minutes
    write: float = 60.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.connect)


@dataclass
class TokenCounts:
    input: int = 0
    output: int = 0
    reasoning: int = 0
    cached: int = 0
    reported: bool = False  # the server sent usage at all


@dataclass
class Sampling:
    """Backend-wide sampling defaults (from the user's config); per-call params override them."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None


class StreamDecoder(Protocol):
    done: bool  # the stream said it was complete ([DONE], message_stop)
    ended: bool  # the answer itself is complete (a finish reason came), even if the end marker did not
    counts: TokenCounts
    stop_reason: str

    def feed(self, event: SseEvent) -> list[BackendEvent]: ...

    def feed_response(self, body: dict[str, Any]) -> list[BackendEvent]: ...

    def finish(self) -> list[BackendEvent]: ...

    def reasoning_items(self) -> list[dict[str, Any]] | None: ...

    def reasoning_mode(self) -> str | None: ...


@dataclass
class RoundRecord:
    """What the last successful round looked like, for the doctor and for tests."""

    reasoning: str = ""
    items: list[dict[str, Any]] | None = None
    mode: str | None = None
    counts: TokenCounts = field(default_factory=TokenCounts)


class RemoteBackend:
    kind = "remote"
    clamp_temperature = False  # endpoints that take temperature only in (0, 1]
    default_max_tokens: int | None = None  # endpoints that require max_tokens
    # How the server's stream carried M2's reasoning (the chat API learns both from its first round):
    split_field = "reasoning_content"  # the field it came in, sent back under that name
    bare_think = False  # raw M2 text with the reasoning not marked (no reasoning parser on the server)

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str | None,
        api_key: ApiKey | None,
        api_key_env: str,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        prices: dict[str, Any] | None = None,
        context_window: int | None = None,
        sampling: Sampling | None = None,
        send_top_k: bool = True,
        extra_body: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
        tokenizer: str | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model or ""
        self._key = api_key
        self.api_key_env = api_key_env
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.prices: dict[str, Price] = price_table(prices)
        self._context_window = context_window
        self.sampling = sampling or Sampling()
        self.send_top_k = send_top_k
        self.extra_body = dict(extra_body or {})
        self.extra_headers = dict(extra_headers or {})
        self.memory = ReasoningMemory()
        self.reasoning_mode: str | None = None  # detected from the endpoint's replies
        self.last_request: dict[str, Any] | None = None  # body of the last request (no headers, no key)
        self.last_round = RoundRecord()
        self._client = httpx.Client(
            timeout=self.timeouts.to_httpx(), verify=_ssl_context(), follow_redirects=False
        )
        self.tokens = PromptTokens(
            load_tokenizer(tokenizer) if tokenizer else None,
            tokenize=self._server_tokenize if self.kind != "anthropic" else None,
        )

    # ------------------------------------------------------------------ the Backend protocol
    @property
    def context_window(self) -> int:
        """The configured window, else the one the server said it has (/tokenize), else M2's."""
        if self._context_window:
            return self._context_window
        if self.tokens.server_window:  # learnt from /tokenize once a prompt was counted
            return self.tokens.server_window
        return M27_CONTEXT if "m2.7" in self.model.lower() else M2_CONTEXT

    def count_tokens(self, prompt: str) -> int:
        """The rendered prompt's size as the server counts it (see token_count.py)."""
        self._ensure_model()
        return self.tokens.count(prompt)

    @property
    def last_reasoning_details(self) -> list[dict[str, Any]] | None:
        """The last round's reasoning items, to store in its Message.reasoning_details."""
        return copy.deepcopy(self.last_round.items)

    def stream(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams | None = None
    ) -> Generator[BackendEvent, None, None]:
        self._ensure_model()
        path, body = self.build_request(list(messages), list(tools or []), params or GenerationParams())
        body.update(self.extra_body)
        self.last_request = body
        url = self.url(path)
        failures = 0
        while True:
            decoder = self.new_decoder(list(tools or []))
            reasoning: list[str] = []
            try:
                for event in self._attempt(url, body, decoder):
                    if isinstance(event, ReasoningDelta):
                        reasoning.append(event.text)
                    elif isinstance(event, RoundRetry):  # a decoder re-reading the round
                        event.attempt = failures + 1
                        reasoning.clear()
                    elif isinstance(event, StreamEnd):  # before yielding: a consumer may stop here
                        self._round_done(decoder, "".join(reasoning))
                        self._calibrate(
                            messages, tools, decoder.counts.input if decoder.counts.reported else 0
                        )
                    yield event
            except PromptTooLong as exc:
                if exc.counted:
                    self._calibrate(messages, tools, exc.counted)
                raise
            except RetryableError as exc:
                failures += 1
                reason = self.scrub(exc.reason)
                if failures >= self.retry.max_attempts:
                    raise BackendError(
                        f"{self.name}: no complete answer from {url} after {failures} attempts; "
                        f"last error: {reason}"
                    ) from None
                delay = self.retry.delay(failures, exc.retry_after)
                log.info("%s: %s; attempt %d in %.2fs", self.name, reason, failures + 1, delay)
                yield RoundRetry(f"{reason}; retrying in {delay:.1f}s", failures + 1)
                self.retry.sleep(delay)
                continue
            return

    def credentials(self) -> dict[str, str]:
        return {self.api_key_env: self._key.reveal()} if self._key is not None else {}

    def close(self) -> None:
        self._client.close()

    def _calibrate(self, messages: list[Message], tools: list[dict[str, Any]] | None, counted: int) -> None:
        """The server counted `counted` prompt tokens for this request: teach the estimate."""
        if counted <= 0 or self.tokens.source not in ("estimate", "calibrated"):
            return
        try:
            prompt = render_prompt(list(messages), list(tools or []) or None)
        except RenderError:
            return
        self.tokens.observe(prompt, counted)

    def _server_tokenize(self, prompt: str) -> tuple[int, int | None] | None:
        """vLLM's and SGLang's /tokenize (at the server root): (count, max_model_len), None if absent."""
        root = self.base_url.removesuffix("/v1")
        try:
            status, data = self.post_json(
                f"{root}/tokenize", {"model": self.model, "prompt": prompt, "add_special_tokens": False}
            )
        except BackendError:
            return None
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("count"), int):
            return None
        window = data.get("max_model_len")
        return data["count"], window if isinstance(window, int) and window > 0 else None

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r}, "
            f"model={self.model!r}, api_key_env={self.api_key_env!r})"
        )

    # ------------------------------------------------------------------ for subclasses
    def build_request(
        self, messages: list[Message], tools: list[dict[str, Any]], params: GenerationParams
    ) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def new_decoder(self, tools: list[dict[str, Any]]) -> StreamDecoder:
        raise NotImplementedError

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}

    def sampling_fields(self, params: GenerationParams) -> dict[str, Any]:
        """temperature, top_p, top_k and seed: the call's, else the config's, else M2's defaults."""
        s = self.sampling
        temperature = _first(params.temperature, s.temperature, M2_TEMPERATURE)
        if self.clamp_temperature:
            temperature = min(max(temperature, 0.01), 1.0)  # the endpoint takes (0, 1] only
        out: dict[str, Any] = {"temperature": temperature, "top_p": _first(params.top_p, s.top_p, M2_TOP_P)}
        if self.send_top_k:
            out["top_k"] = _first(params.top_k, s.top_k, M2_TOP_K)
        if params.seed is not None:
            out["seed"] = params.seed
        return out

    def max_tokens(self, params: GenerationParams) -> int | None:
        return _first(params.max_tokens, self.sampling.max_tokens, self.default_max_tokens)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def scrub(self, text: str) -> str:
        return scrub(text, self._key)

    def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
        """One plain JSON request (no retries): for probes such as the doctor's."""
        try:
            response = self._client.post(url, json=body, headers=self._headers(stream=False))
        except httpx.HTTPError as exc:
            raise BackendError(self.scrub(f"{url}: {type(exc).__name__}: {exc}")) from None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    # ------------------------------------------------------------------ one attempt
    def _headers(self, stream: bool = True) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        headers.update(self.extra_headers)
        headers.update(self.auth_headers())
        return headers

    def _attempt(self, url: str, body: dict[str, Any], decoder: StreamDecoder) -> Iterator[BackendEvent]:
        try:
            with self._client.stream("POST", url, json=body, headers=self._headers()) as response:
                if response.status_code >= 300:
                    raise self._status_error(url, response)
                content_type = response.headers.get("content-type", "")
                if "event-stream" not in content_type and "json" in content_type:
                    # The server ignored `stream: true` and sent the whole answer at once.
                    yield from decoder.feed_response(_json_body(response))
                else:
                    after_end = 0
                    for event in iter_sse(response.iter_lines()):
                        if not decoder.done:
                            yield from decoder.feed(event)
                            continue
                        # Read on to the end of the body so the connection can be reused (closing
                        # it unread resets it), unless the server keeps talking past its end marker.
                        after_end += 1
                        if after_end > 16:
                            break
                if not (decoder.done or decoder.ended):
                    raise RetryableError("the stream ended before the answer was complete")
                yield from decoder.finish()
                yield self._usage(decoder.counts)
                end = StreamEnd(decoder.stop_reason, reasoning_details=decoder.reasoning_items())
                yield end
        except httpx.TimeoutException as exc:
            raise RetryableError(f"timed out ({type(exc).__name__})") from None
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            raise BackendError(self.scrub(f"{self.name}: cannot request {url}: {exc}")) from None
        except httpx.TransportError as exc:
            raise RetryableError(f"connection error ({type(exc).__name__}: {exc})") from None
        except MalformedChunk as exc:
            raise RetryableError(str(exc)) from None
        except EndpointError as exc:
            hint = f". Check the API key in {self.api_key_env}." if exc.auth else ""
            raise BackendError(self.scrub(f"{self.name}: {url}: {exc}{hint}")) from None

    def _status_error(self, url: str, response: httpx.Response) -> Exception:
        status = response.status_code
        message = server_message(response.read()[:_ERROR_BODY_LIMIT].decode("utf-8", "replace"))
        detail = f"HTTP {status}" + (f": {message}" if message else "")
        too_long = context_rejection(status, self.scrub(message))
        if too_long is not None:
            return too_long
        if is_retryable_status(status) and "insufficient_quota" not in message:
            return RetryableError(detail, parse_retry_after(response.headers))
        if status in (401, 403):
            if self._key is None:
                text = f"{detail}. No API key was sent: set {self.api_key_env} (or name another variable with --api-key-env)."
            else:
                text = f"{detail}. The endpoint refused the API key from {self.api_key_env}."
        elif status == 404:
            text = f"{detail}. Is {self.base_url} the right base URL (the /v1 root) and {self.model!r} a model it serves?"
        else:
            text = detail
        return BackendError(self.scrub(f"{self.name}: {url}: {text}"))

    def _usage(self, counts: TokenCounts) -> Usage:
        price = lookup_price(self.prices, self.model)
        cost = price.cost(counts.input, counts.output, counts.cached) if price and counts.reported else None
        return Usage(counts.input, counts.output, counts.reasoning, counts.cached, cost)

    def _round_done(self, decoder: StreamDecoder, reasoning: str) -> None:
        items = decoder.reasoning_items()
        mode = decoder.reasoning_mode()
        if mode is not None:
            self.reasoning_mode = mode
        self.memory.remember(reasoning, items)
        self.last_round = RoundRecord(reasoning, copy.deepcopy(items), mode, decoder.counts)

    def _ensure_model(self) -> None:
        """No --model given: ask the server which it serves (a vLLM or SGLang server serves one)."""
        if self.model:
            return
        url = self.url("models")
        problem, data = "", None
        try:
            response = self._client.get(url, headers=self._headers(stream=False))
            if response.status_code == 200:
                data = response.json().get("data")
            else:
                problem = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        except (ValueError, AttributeError):
            problem = "not a model list"
        ids = [
            m["id"] for m in data or [] if isinstance(m, dict) and m.get("id") and isinstance(m["id"], str)
        ]
        if not ids:
            why = f" ({self.scrub(problem)})" if problem else ""
            raise BackendError(
                f"{self.name}: no model given and {url} did not list one{why}; pass --model NAME"
            )
        self.model = ids[0]


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()  # building one costs tens of ms: share it between backends


def server_message(text: str) -> str:
    """The human part of an error body: OpenAI, Anthropic, MiniMax or FastAPI shapes, else the text."""
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:500]
    return json_error_message(data) or " ".join(text.split())[:500]


def json_error_message(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    if isinstance(error, dict):
        parts = [str(error.get(k)) for k in ("type", "code") if error.get(k) not in (None, "")]
        message = str(error.get("message") or "")
        return f"{message} ({', '.join(parts)})" if parts and message else message or ", ".join(parts)
    if isinstance(error, str):
        return error
    base = data.get("base_resp")
    if isinstance(base, dict) and base.get("status_code"):
        return f"{base.get('status_msg', '')} (MiniMax status {base.get('status_code')})"
    for key in ("message", "detail"):
        if isinstance(data.get(key), str):
            return data[key]
    return ""


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.read())
    except ValueError:
        raise MalformedChunk("the response is neither an event stream nor valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedChunk("the JSON response is not an object")
    return data


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
