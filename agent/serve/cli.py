"""`mmx-agent serve CKPT`: the local model behind OpenAI- and Anthropic-style HTTP endpoints.

The socket is bound first and the server answers (503 on model routes) while the model loads, so a
client can wait on /health. The web stack is imported inside the command: `mmx-agent --help` works
without the `serve` extra.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

import typer

from agent.exit_codes import ExitCode


def _fail(message: str, code: ExitCode = ExitCode.ERROR) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _say(message: str) -> None:
    print(f"mmx-agent serve: {message}", file=sys.stderr, flush=True)


def _require_stack() -> None:
    missing = []
    for module, package in (
        ("torch", "torch"),
        ("starlette", "starlette"),
        ("uvicorn", "uvicorn"),
        ("sse_starlette", "sse-starlette"),
    ):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        _fail(
            f"mmx-agent serve needs {', '.join(missing)}: install PyTorch (CPU only: pip install torch==2.13.0), "
            "then pip install 'mmx-agent[local,serve]'"
        )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):,.2f} GiB"


def serve_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory (Hugging Face layout)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(
        8000, "--port", min=0, max=65535, help="Port; 0 picks a free one (the startup line says which)."
    ),
    dtype: str | None = typer.Option(None, "--dtype", help="float32 | bfloat16 (default: the checkpoint's)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (auto: cuda when there is one)."),
    compile: bool = typer.Option(
        False,
        "--compile",
        help="Compile the one-sequence decode step and serve requests one at a time on it (no batching).",
    ),
    api_key_env: str | None = typer.Option(
        None,
        "--api-key-env",
        help="Environment variable holding the key clients must send (none: no key needed).",
    ),
    max_concurrency: int = typer.Option(8, "--max-concurrency", min=1, help="Requests generating at once."),
    max_queue: int = typer.Option(
        64, "--max-queue", min=0, help="Requests waiting for a slot; more get 429."
    ),
    max_tokens_cap: int | None = typer.Option(
        None,
        "--max-tokens-cap",
        min=1,
        help="Most tokens one request may generate (default: what the context leaves).",
    ),
    context: int | None = typer.Option(
        None, "--context", min=16, help="Context size (default: the checkpoint's)."
    ),
    served_model_name: list[str] = typer.Option(
        None,
        "--served-model-name",
        help="Model name clients use (repeatable; default: the checkpoint directory's name).",
    ),
    log_level: str = typer.Option(
        "warning", "--log-level", help="uvicorn's log level: warning | info | debug."
    ),
) -> None:
    """Serve a local checkpoint over HTTP: /v1/chat/completions, /v1/completions, /v1/messages, /tokenize."""
    if dtype is not None and dtype not in ("float32", "bfloat16"):
        _fail(f"--dtype must be float32 or bfloat16, got {dtype!r}", ExitCode.USAGE)
    if device not in ("auto", "cpu", "cuda"):
        _fail(f"--device must be auto, cpu or cuda, got {device!r}", ExitCode.USAGE)
    if not checkpoint.is_dir():
        _fail(f"{checkpoint}: no such checkpoint directory", ExitCode.USAGE)
    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            _fail(f"--api-key-env {api_key_env}: that environment variable is not set", ExitCode.USAGE)
    _require_stack()

    import torch
    import uvicorn

    from agent.serve.app import build_app
    from agent.serve.host import Limits, ModelHost
    from agent.serve.state import ServerState

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = list(served_model_name or []) or [checkpoint.resolve().name]
    state = ServerState(names, api_key)
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound_port}"
    server = uvicorn.Server(
        uvicorn.Config(build_app(state), log_level=log_level, access_log=False, lifespan="off")
    )
    _say(f"listening on {url}, loading {checkpoint} (requests get 503 until it is ready)")
    failure: list[str] = []

    def load() -> None:
        limits = Limits(max_concurrency, max_queue, max_tokens_cap, context)
        try:
            loaded = ModelHost(checkpoint, dtype=dtype, device=device, compile=compile, limits=limits)
        except (OSError, ValueError, RuntimeError) as exc:
            failure.append(str(exc))
            server.should_exit = True
            return
        state.host = loaded
        d = loaded.describe()
        cap = f", at most {max_tokens_cap} tokens per request" if max_tokens_cap else ""
        _say(
            f"ready at {url}/v1 (model {', '.join(names)}): device {d['device']}, dtype {d['dtype']}, "
            f"kernels {d['kernels']}, context {d['context']:,} tokens, memory {_mib(d['memory_bytes'])}, "
            f"{d['max_concurrency']} request(s) generating at once, queue {max_queue}{cap}"
        )

    loader = threading.Thread(target=load, name="model-load", daemon=True)
    loader.start()
    try:
        server.run(sockets=[sock])
    finally:
        if state.host is not None:
            state.host.close()
    if failure:
        _fail(f"could not load {checkpoint}: {failure[0]}")
