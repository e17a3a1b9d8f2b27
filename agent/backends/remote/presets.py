"""Named ways to reach M2 (`--backend`), and `make_backend`, which builds one.

| kind                 | protocol                         | default base URL            | key env var       |
|----------------------|----------------------------------|-----------------------------|-------------------|
| minimax              | chat completions, reasoning_split| https://api.minimax.io/v1   | MINIMAX_API_KEY   |
| openai-compatible    | chat completions (vLLM, SGLang)  | http://127.0.0.1:8000/v1    | OPENAI_API_KEY    |
| anthropic-compatible | messages API                     | http://127.0.0.1:8000/v1    | ANTHROPIC_API_KEY |
| completions          | raw completions, our renderer    | http://127.0.0.1:8000/v1    | OPENAI_API_KEY    |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.backends.base import BackendError
from agent.backends.remote.anthropic import AnthropicBackend
from agent.backends.remote.completions import CompletionsBackend
from agent.backends.remote.http import RemoteBackend, Sampling, Timeouts
from agent.backends.remote.keys import read_api_key
from agent.backends.remote.openai_chat import OpenAIChatBackend
from agent.backends.remote.retry import RetryPolicy

LOCAL_V1 = "http://127.0.0.1:8000/v1"  # vLLM's default address


@dataclass(frozen=True)
class Preset:
    backend: type[RemoteBackend]
    base_url: str
    api_key_env: str
    model: str | None = None  # None: ask the server (GET /models)
    key_required: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # class-specific defaults


PRESETS: dict[str, Preset] = {
    "minimax": Preset(
        OpenAIChatBackend,
        "https://api.minimax.io/v1",
        "MINIMAX_API_KEY",
        model="MiniMax-M2",
        key_required=True,
        # reasoning_split: thinking comes as reasoning_details; MiniMax takes temperature in (0, 1],
        # ignores top_k, and prefers max_completion_tokens.
        options={
            "reasoning_split": True,
            "clamp_temperature": True,
            "send_top_k": False,
            "max_tokens_field": "max_completion_tokens",
        },
    ),
    "openai-compatible": Preset(OpenAIChatBackend, LOCAL_V1, "OPENAI_API_KEY"),
    "anthropic-compatible": Preset(AnthropicBackend, LOCAL_V1, "ANTHROPIC_API_KEY", model="MiniMax-M2"),
    "completions": Preset(CompletionsBackend, LOCAL_V1, "OPENAI_API_KEY"),
}
BACKEND_KINDS = tuple(PRESETS)

# Options every kind takes (see make_backend), and those of one protocol only.
_COMMON = {
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "max_attempts",
    "backoff_base",
    "backoff_max",
    "max_retry_after",
    "retry",
    "prices",
    "context_window",
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "send_top_k",
    "extra_body",
    "extra_headers",
    "tokenizer",
}
_SPECIFIC = {
    OpenAIChatBackend: {
        "reasoning_mode",
        "reasoning_split",
        "stream_usage",
        "max_tokens_field",
        "clamp_temperature",
    },
    CompletionsBackend: {"stream_usage", "keep_special_tokens"},
    AnthropicBackend: {"anthropic_version"},
}


def make_backend(
    kind: str,
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    **options: Any,
) -> RemoteBackend:
    """A remote backend following agent/backends/base.py's Backend protocol.

    kind: minimax | openai-compatible | anthropic-compatible | completions.
    base_url: the API root (the `/v1` root; for Anthropic-style `.../anthropic` or `.../v1` both work).
    model: None takes the preset's default, or asks the server (`GET {base}/models`).
    api_key_env: the variable holding the key; None takes the preset's. The key itself is never
    passed around: it is read here and kept out of every repr, log line and error.
    options (all optional; None values are ignored, so config entries can be passed through):
      connect_timeout, read_timeout, write_timeout: seconds (10, 300, 60);
      max_attempts (5), backoff_base (1.0 s), backoff_max (30 s), max_retry_after (120 s), or retry=RetryPolicy;
      prices: {model: {"input", "output", "cached_input"} $/Mtok} over the MiniMax defaults;
      context_window; temperature, top_p, top_k, max_tokens: defaults under the per-call params;
      send_top_k; extra_body (merged into every request); extra_headers;
      tokenizer: a tokenizer.json (or a directory with one) to count prompts exactly;
      chat only: reasoning_mode (auto | inline | reasoning_content | reasoning_details),
        reasoning_split, stream_usage, max_tokens_field, clamp_temperature;
      completions only: stream_usage, keep_special_tokens; Anthropic only: anthropic_version.
    Raises ValueError for an unknown kind or option, BackendError when a required key is not set.
    """
    preset = PRESETS.get(kind)
    if preset is None:
        raise ValueError(f"unknown backend {kind!r}: choose one of {', '.join(BACKEND_KINDS)}")
    options = {k: v for k, v in options.items() if v is not None}
    allowed = _COMMON | _SPECIFIC[preset.backend]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown option(s) for the {kind} backend: {', '.join(unknown)}")
    url = (base_url or preset.base_url).strip()
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--base-url must be an http:// or https:// URL, got {url!r}")
    env = api_key_env or preset.api_key_env
    key = read_api_key(env)
    if key is None and preset.key_required:
        raise BackendError(f"{env} is not set: the {kind} backend needs an API key in that variable")

    retry = options.pop("retry", None) or RetryPolicy(
        **{
            name: options.pop(option)
            for option, name in (
                ("max_attempts", "max_attempts"),
                ("backoff_base", "base_delay"),
                ("backoff_max", "max_delay"),
                ("max_retry_after", "max_retry_after"),
            )
            if option in options
        }
    )
    timeouts = Timeouts(
        connect=options.pop("connect_timeout", Timeouts.connect),
        read=options.pop("read_timeout", Timeouts.read),
        write=options.pop("write_timeout", Timeouts.write),
    )
    sampling = Sampling(*(options.pop(k, None) for k in ("temperature", "top_p", "top_k", "max_tokens")))
    specific = {**preset.options, **options}
    return preset.backend(
        name=kind,
        base_url=url,
        model=model or preset.model,
        api_key=key,
        api_key_env=env,
        timeouts=timeouts,
        retry=retry,
        sampling=sampling,
        **specific,
    )
