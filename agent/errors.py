"""What a user sees when something fails unexpectedly: one clear line, the traceback only on request.

`mmx-agent --debug ...` (anywhere before a `--`) or MMX_AGENT_DEBUG=1 turns tracebacks on.
"""

from __future__ import annotations

import os
import sys
import traceback

DEBUG_ENV = "MMX_AGENT_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def take_debug_flag(argv: list[str]) -> list[str]:
    """argv without `--debug` (which then sets MMX_AGENT_DEBUG for this process and its children).

    Only options before a `--` count: after it come a command's own arguments (`sandbox exec -- ...`).
    """
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" not in argv[:end]:
        return argv
    os.environ[DEBUG_ENV] = "1"
    return [arg for arg in argv[:end] if arg != "--debug"] + argv[end:]


def describe(exc: BaseException) -> str:
    """One line for a user, with credentials from the environment redacted."""
    from agent.secrets import redact

    text = redact(str(exc)).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def report_unexpected(exc: BaseException) -> None:
    """The traceback on stderr with --debug; otherwise a hint that it can be had."""
    if debug_enabled():
        from agent.secrets import redact

        print(redact("".join(traceback.format_exception(exc))), end="", file=sys.stderr)
    else:
        print("(run again with --debug for the traceback)", file=sys.stderr)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """warnings.showwarning for the CLI: `warning: TEXT`, not a file name and a source line."""
    detail = f" ({filename}:{lineno})" if debug_enabled() else ""
    print(f"warning: {message}{detail}", file=file or sys.stderr)
