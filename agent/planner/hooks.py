"""User hooks: shell commands from the config's `[[hooks.EVENT]]` entries, run around the loop's steps.

Each hook gets one JSON object on stdin and runs confined, like the model's own shell commands.
Exit 0 continues (stdout becomes context for the model after session_start and user_prompt_submit);
exit 2 blocks (pre_tool_use: the call is refused with the hook's stderr; user_prompt_submit: the
prompt is not sent) or sends stderr to the model (post_tool_use, stop); anything else is a warning.
docs/extensions.md ("Hooks") is the user's reference.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config import HookSpec
from agent.events import HookRun, Status
from sandbox.base import OutputRedactor, Sandbox, SandboxError

BLOCK = 2
# The payload travels inside a `bash -c` argument (at most 128 KiB): longer strings in it are cut,
# to 20,000 characters, or to 2,000 where many long ones would still not fit.
MAX_FIELD_CHARS, MAX_PAYLOAD_CHARS = (20_000, 2_000), 100_000
MAX_REPLY_CHARS = 10_000  # of a hook's stdout or stderr that reaches the model
TOOL_EVENTS = ("pre_tool_use", "post_tool_use")
# exit 2 means something only where the event can be blocked or answered
BLOCKABLE = ("user_prompt_submit", "pre_tool_use", "post_tool_use", "stop")


@dataclass
class HookReply:
    """What the hooks of one event said: `blocked` (some exited 2) with their stderr, or the stdout
    of those that exited 0."""

    blocked: bool = False
    feedback: str = ""  # stderr of the hooks that exited 2
    context: str = ""  # stdout of the hooks that exited 0


def matches(matcher: str, tool_name: str) -> bool:
    return any(fnmatch.fnmatchcase(tool_name, pattern.strip()) for pattern in matcher.split("|"))


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"\n[... {len(value) - limit} characters cut]"
    if isinstance(value, dict):
        return {key: _cut(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item, limit) for item in value]
    return value


def _payload(base: dict[str, Any], fields: dict[str, Any]) -> str:
    for limit in MAX_FIELD_CHARS:
        text = json.dumps({**base, **_cut(fields, limit)})
        if len(text) <= MAX_PAYLOAD_CHARS:
            break
    return text


class Hooks:
    def __init__(
        self,
        specs: dict[str, list[HookSpec]],
        sandbox: Sandbox,
        *,
        session_id: str,
        emit: Callable[[Any], None],
        redactor: OutputRedactor | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.specs = specs
        self.sandbox = sandbox
        self.session_id = session_id
        self.emit = emit
        self.redactor = redactor
        self.env = {**(env or {}), "MMX_AGENT_PROJECT_DIR": sandbox.root}

    def for_tool_calls(self, emit: Callable[[Any], None]) -> Hooks:
        """The tool-call hooks alone, reporting to `emit`: a subagent's calls pass them too."""
        specs = {event: self.specs[event] for event in TOOL_EVENTS if event in self.specs}
        return Hooks(
            specs, self.sandbox, session_id=self.session_id, emit=emit, redactor=self.redactor, env=self.env
        )

    def has(self, event: str) -> bool:
        return bool(self.specs.get(event))

    def run(self, event: str, tool_name: str | None = None, **fields: Any) -> HookReply:
        """Runs the event's hooks (for a tool event, those whose matcher fits `tool_name`) in order;
        for a call or a prompt, the first that blocks it spares the rest."""
        reply = HookReply()
        base = {"session_id": self.session_id, "cwd": self.sandbox.root, "event": event}
        if tool_name is not None:
            base["tool_name"] = tool_name
        payload = _payload(base, fields)
        for spec in self.specs.get(event, []):
            if event in TOOL_EVENTS and not matches(spec.matcher, tool_name or ""):
                continue
            started = time.monotonic()
            exit_code, stdout, stderr = self._exec(spec, payload)
            duration_ms = int((time.monotonic() - started) * 1000)
            blocked = exit_code == BLOCK and event in BLOCKABLE
            outcome = "continue" if exit_code == 0 else "block" if blocked else "warning"
            self.emit(HookRun(event, spec.matcher, spec.command, exit_code, outcome, duration_ms, tool_name))
            if outcome == "continue":
                if stdout.strip():
                    reply.context += stdout.strip()[:MAX_REPLY_CHARS] + "\n"
            elif outcome == "block":
                reply.blocked = True
                said = stderr.strip() or f"blocked by the hook `{spec.command}`"
                reply.feedback += said[:MAX_REPLY_CHARS] + "\n"
                if event in ("pre_tool_use", "user_prompt_submit"):
                    break
            else:
                why = "timed out" if exit_code is None else f"exited {exit_code}"
                last_line = (stderr.strip().splitlines() or [""])[-1][:300]
                message = f"{event} hook `{spec.command}` {why}" + (f": {last_line}" if last_line else "")
                self.emit(Status(message, "warning"))
        reply.context, reply.feedback = reply.context.strip(), reply.feedback.strip()
        return reply

    def _exec(self, spec: HookSpec, payload: str) -> tuple[int | None, str, str]:
        """(exit code, stdout, stderr); exit code None when the hook timed out or could not start."""
        marker = f"__mmx_hook_stderr_{uuid.uuid4().hex}__"
        # stdout goes out as it comes (fd 3); stderr is captured and printed after a marker, so the
        # two come back apart from one exec. The payload is a quoted word, fed on stdin.
        script = (
            f"__mmx_input={shlex.quote(payload)}\n__mmx_hook={shlex.quote(spec.command)}\n"
            "exec 3>&1\n"
            '__mmx_err=$(printf %s "$__mmx_input" | eval "$__mmx_hook" 2>&1 >&3 3>&-)\n'
            f"__mmx_status=$?\nprintf '%s%s' {shlex.quote(marker)} \"$__mmx_err\"\nexit $__mmx_status\n"
        )
        try:
            result = self.sandbox.exec(
                script,
                timeout=spec.timeout,
                cwd=self.sandbox.root,
                env=self.env,
                max_output=200_000,
                confined=True,
                redactor=self.redactor,
            )
        except (SandboxError, OSError) as exc:  # a hook never ends the run
            return None, "", f"could not start: {exc}"
        stdout, _, stderr = result.output.partition(marker)
        if result.timed_out:
            return None, stdout, f"no answer within {spec.timeout:g} s"
        return result.exit_code, stdout, stderr
