"""The terminal rendering of a run's events (rich): reasoning dimmed and collapsible, tool calls with
their arguments, diffs highlighted, the todo list, subagents collapsed to a line each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.syntax import Syntax
from rich.text import Text

from agent.events import (
    AssistantMessage,
    ChildEvent,
    Compaction,
    FinalResult,
    FormatError,
    HookRun,
    ReasoningDelta,
    RoundRetry,
    Status,
    TextDelta,
    TodoUpdate,
    ToolCallStarted,
    ToolResultEvent,
)
from agent.planner.todo import render_todos

COLLAPSED_REASONING_LINES = 6
RESULT_PREVIEW_LINES = 12


@dataclass
class _Child:
    label: str  # "explore: find the config loader"
    depth: int
    calls: int = 0
    doing: str = ""  # its latest tool call

    def line(self, ending: str | None = None) -> Text:
        head = (
            "  " * self.depth + f"  ↳ {self.label} · {self.calls} tool call{'' if self.calls == 1 else 's'}"
        )
        if ending is None:
            return Text(head + (f" · {self.doing}" if self.doing else ""), style="dim")
        return Text(f"{head} · {ending}", style="dim" if ending == "done" else "red")


class SubagentLines:
    """Running subagents, one line each (what it is for, its tool calls so far, its latest), redrawn
    in place; a subagent that ends leaves one summary line. None of its deltas are shown."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.running: dict[str, _Child] = {}  # by the task call's id
        self.live: Live | None = None

    def started(self, call_id: str, arguments: dict[str, Any], depth: int = 0) -> None:
        label = f"{arguments.get('kind', 'task')}: {str(arguments.get('description', ''))[:80]}"
        self.running[call_id] = _Child(label, depth)
        self._redraw()

    def child_event(self, event: ChildEvent) -> None:
        child = self.running.get(event.parent_id)
        inner = event.event
        if child is None:
            return
        if isinstance(inner, ToolCallStarted):
            child.calls += 1
            child.doing = f"{inner.name} {_shown_argument(inner.arguments)[:60]}"
            if inner.name == "task":
                self.started(inner.id, inner.arguments, child.depth + 1)
        elif isinstance(inner, ToolResultEvent) and inner.name == "task":
            self.ended(inner.id, inner.ok, inner.data)
        self._redraw()

    def ended(self, call_id: str, ok: bool, data: dict[str, Any]) -> None:
        child = self.running.pop(call_id, None)
        if child is None:
            return
        self._redraw()
        failed = f"failed ({data['status']})" if "status" in data else "stopped"
        self.console.print(child.line("done" if ok else failed))

    def pause(self) -> None:
        """Stops redrawing (before a question at the prompt); the next event draws again."""
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _redraw(self) -> None:
        if not self.running:
            self.pause()
            return
        lines = Group(*(child.line() for child in self.running.values()))
        if self.live is None:
            self.live = Live(lines, console=self.console, auto_refresh=False, transient=True)
            self.live.start()
        self.live.update(lines, refresh=True)


def _shown_argument(args: dict[str, Any]) -> str:
    return str(args.get("command") or args.get("path") or json.dumps(args, ensure_ascii=False))


class ConsoleRenderer:
    def __init__(self, console: Console, reasoning_display: str = "collapsed") -> None:
        self.console = console
        self.reasoning_display = reasoning_display  # full | collapsed | hidden
        self.last_reasoning = ""
        self._reasoning: list[str] = []
        self._reasoning_lines = 0
        self._collapsed_note = False
        self._streaming = None  # "reasoning" or "text" while a delta stream is open
        self.subagents = SubagentLines(console)

    def __call__(self, event: Any) -> None:
        handler = getattr(self, "_on_" + event.type, None)
        if handler is not None:
            handler(event)

    # ---------------------------------------------------------------- streams
    def _end_stream(self) -> None:
        if self._streaming is not None:
            self.console.print()
            self._streaming = None

    def _on_reasoning_delta(self, event: ReasoningDelta) -> None:
        self._reasoning.append(event.text)
        if self.reasoning_display == "hidden":
            return
        if self.reasoning_display == "collapsed":
            if self._reasoning_lines >= COLLAPSED_REASONING_LINES:
                if not self._collapsed_note:
                    self.console.print(
                        Text(" ... (reasoning continues; /expand shows all of it)", style="dim")
                    )
                    self._collapsed_note = True
                return
            lines = event.text.split("\n")
            room = COLLAPSED_REASONING_LINES - self._reasoning_lines
            text = "\n".join(lines[:room])
            self._reasoning_lines += len(lines) - 1
        else:
            text = event.text
        if self._streaming != "reasoning":
            self._end_stream()
            self._streaming = "reasoning"
        self.console.print(Text(text, style="dim italic"), end="")

    def _on_text_delta(self, event: TextDelta) -> None:
        if self._streaming != "text":
            self._end_stream()
            self._streaming = "text"
        self.console.print(Text(event.text), end="")

    def _on_assistant_message(self, event: AssistantMessage) -> None:
        self._end_stream()
        self.last_reasoning = "".join(self._reasoning)
        self._reasoning, self._reasoning_lines, self._collapsed_note = [], 0, False

    def _on_round_retry(self, event: RoundRetry) -> None:
        self._end_stream()
        self._reasoning, self._reasoning_lines, self._collapsed_note = [], 0, False
        self.console.print(Text(f"[retrying the round: {event.reason}]", style="yellow"))

    # ---------------------------------------------------------------- tools
    def _on_tool_call(self, event: ToolCallStarted) -> None:
        self._end_stream()
        args = event.arguments
        if event.name in ("edit_file", "multi_edit") and isinstance(args.get("path"), str):
            self.console.print(Text(f"● {event.name} {args['path']}", style="bold cyan"))
            for edit in args.get("edits") or [args]:
                self._show_edit(edit)
            return
        if event.name == "task":
            self.console.print(
                Text(f"● task {args.get('kind', '')}: {args.get('description', '')}", style="bold cyan")
            )
            self.subagents.started(event.id, args)
            return
        self.console.print(Text(f"● {event.name} ", style="bold cyan") + Text(_shown_argument(args)[:300]))

    def _show_edit(self, edit: dict[str, Any]) -> None:
        old, new = str(edit.get("old", "")), str(edit.get("new", ""))
        lines = [f"-{line}" for line in old.splitlines()] + [f"+{line}" for line in new.splitlines()]
        self.console.print(
            Syntax("\n".join(lines[:60]), "diff", theme="ansi_dark", background_color="default")
        )

    def _on_tool_result(self, event: ToolResultEvent) -> None:
        if event.name == "task":
            self.subagents.ended(event.id, event.ok, event.data)
        lines = event.output.splitlines()
        preview = "\n".join(lines[:RESULT_PREVIEW_LINES])
        more = len(lines) - RESULT_PREVIEW_LINES
        if preview.startswith("diff --git") or preview.startswith("--- "):
            self.console.print(Syntax(preview, "diff", theme="ansi_dark", background_color="default"))
        else:
            self.console.print(Text(preview, style="dim" if event.ok else "red"))
        if more > 0:
            self.console.print(Text(f"  ... {more} more lines", style="dim"))

    def _on_child_event(self, event: ChildEvent) -> None:
        self.subagents.child_event(event)

    def _on_todo_update(self, event: TodoUpdate) -> None:
        self.show_todos(event.items)

    def show_todos(self, items: list[dict[str, str]]) -> None:
        self.console.print(Text("Plan:", style="bold"))
        self.console.print(Text(render_todos(items) or "(empty)"))

    # ---------------------------------------------------------------- run notes
    def _on_status(self, event: Status) -> None:
        self._end_stream()
        self.console.print(Text(event.message, style="red" if event.level == "error" else "yellow"))

    def _on_hook(self, event: HookRun) -> None:
        if event.outcome == "block":  # warnings come as status events; a hook that let things be is quiet
            self._end_stream()
            self.console.print(Text(f"[{event.event} hook blocked] {event.command}", style="dim"))

    def _on_format_error(self, event: FormatError) -> None:
        self._end_stream()
        self.console.print(Text(f"[malformed model output] {event.message}", style="yellow"))

    def _on_compaction(self, event: Compaction) -> None:
        self.console.print(
            Text(
                f"[context {event.stage}: {event.tokens_before} -> {event.tokens_after} tokens]", style="dim"
            )
        )

    def _on_final_result(self, event: FinalResult) -> None:
        self._end_stream()
        usage = event.usage
        cost = f", ${event.cost:.4f}" if event.cost is not None else ""
        self.console.print(
            Text(
                f"[{event.status}; {event.turns} turns; {usage.get('input_tokens', 0)} in / "
                f"{usage.get('output_tokens', 0)} out tokens{cost}]",
                style="dim",
            )
        )
