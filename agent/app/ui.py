"""The terminal rendering of a run's events (rich): reasoning dimmed and collapsible, tool calls with
their arguments, diffs highlighted, the todo list."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.syntax import Syntax
from rich.text import Text

from agent.events import (
    AssistantMessage,
    Compaction,
    FinalResult,
    FormatError,
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


class ConsoleRenderer:
    def __init__(self, console: Console, reasoning_display: str = "collapsed") -> None:
        self.console = console
        self.reasoning_display = reasoning_display  # full | collapsed | hidden
        self.last_reasoning = ""
        self._reasoning: list[str] = []
        self._reasoning_lines = 0
        self._collapsed_note = False
        self._streaming = None  # "reasoning" or "text" while a delta stream is open

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
        shown = args.get("command") or args.get("path") or json.dumps(args, ensure_ascii=False)
        self.console.print(Text(f"● {event.name} ", style="bold cyan") + Text(str(shown)[:300]))

    def _show_edit(self, edit: dict[str, Any]) -> None:
        old, new = str(edit.get("old", "")), str(edit.get("new", ""))
        lines = [f"-{line}" for line in old.splitlines()] + [f"+{line}" for line in new.splitlines()]
        self.console.print(
            Syntax("\n".join(lines[:60]), "diff", theme="ansi_dark", background_color="default")
        )

    def _on_tool_result(self, event: ToolResultEvent) -> None:
        lines = event.output.splitlines()
        preview = "\n".join(lines[:RESULT_PREVIEW_LINES])
        more = len(lines) - RESULT_PREVIEW_LINES
        if preview.startswith("diff --git") or preview.startswith("--- "):
            self.console.print(Syntax(preview, "diff", theme="ansi_dark", background_color="default"))
        else:
            self.console.print(Text(preview, style="dim" if event.ok else "red"))
        if more > 0:
            self.console.print(Text(f"  ... {more} more lines", style="dim"))

    def _on_todo_update(self, event: TodoUpdate) -> None:
        self.show_todos(event.items)

    def show_todos(self, items: list[dict[str, str]]) -> None:
        self.console.print(Text("Plan:", style="bold"))
        self.console.print(Text(render_todos(items) or "(empty)"))

    # ---------------------------------------------------------------- run notes
    def _on_status(self, event: Status) -> None:
        self._end_stream()
        self.console.print(Text(event.message, style="red" if event.level == "error" else "yellow"))

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
