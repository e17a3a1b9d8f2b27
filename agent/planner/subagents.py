"""The task tool: the model hands a piece of work to a subagent, a child run with a fresh context.

`explore` children get the read-only tools and may run several at once (within one round);
`general` children get the parent's tools under the parent's permission policy, one at a time.
The parent sees the child's final message, cut to MAX_ANSWER_CHARS. A child at MAX_DEPTH is not
offered the tool, and an explore child may start explore children only: never more than its parent.

What runs a child (a loop of its own, sharing the parent's sandbox and budget) is handed to the
tool by the session, so the planner stays below the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.events import FinalResult
from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult, current_call_id

KINDS = ("explore", "general")
MAX_DEPTH = 2  # the main run is depth 0; a child at this depth cannot start children
CHILD_MAX_TURNS = 30  # a child's own cap, on top of the parent's budget
MAX_ANSWER_CHARS = 16_000
# The registry's cut marker: a secret cut through just before it is trimmed, not half shown.
CUT_NOTE = "\n[output truncated: the subagent's answer had {more} more characters]"

ROLE_NOTE = """
# You are a subagent
Another agent gave you this {kind} task: "{description}". Its brief is the user message. Work on it \
alone (nobody answers questions) and finish with a final answer without a tool call: it is all the \
other agent sees of your work, so make it complete and self-contained (file paths, line numbers, \
what you found or changed, what you could not do).
"""
EXPLORE_NOTE = "You have read-only tools: you cannot edit files or run commands.\n"


@dataclass
class Brief:
    description: str
    prompt: str
    kind: str  # explore | general
    call_id: str  # the parent's task call: the child's events carry it as parent_id

    def role_note(self) -> str:
        note = ROLE_NOTE.format(kind=self.kind, description=self.description)
        return note + (EXPLORE_NOTE if self.kind == "explore" else "")


RunChild = Callable[[Brief], FinalResult]


class TaskTool(ToolBase):
    name = "task"
    permission = Permission.READ  # by itself it touches nothing; the child's calls pass the policy
    parallel_safe = False  # general tasks edit and run commands: one at a time

    def __init__(self, run_child: RunChild, kinds: tuple[str, ...] = KINDS) -> None:
        self.run_child = run_child
        self.kinds = kinds
        self.description = (
            "Hand a self-contained piece of work to a subagent with a fresh context; you get its final "
            "answer back. kind 'explore': read-only tools (search, read, map the code), for questions "
            "whose digging would fill your context; several explore tasks in one reply run at the same "
            "time."
            + (
                " kind 'general': your tools and permissions, for a separate change; one at a time."
                if "general" in kinds
                else ""
            )
            + " The subagent sees only the prompt: say what to do, where to look and what to report."
        )
        self.parameters = {
            "type": "object",
            "properties": {
                "description": {
                    "type": "string",
                    "minLength": 1,
                    "description": "a few words: what it is for",
                },
                "prompt": {"type": "string", "minLength": 1, "description": "the subagent's brief"},
                "kind": {"type": "string", "enum": list(kinds)},
            },
            "required": ["description", "prompt", "kind"],
            "additionalProperties": False,
        }

    def runs_in_parallel(self, args: dict[str, Any]) -> bool:
        return args.get("kind") == "explore"

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        brief = Brief(args["description"], args["prompt"], args["kind"], current_call_id.get())
        outcome = self.run_child(brief)  # a crash here is the call's failure (run_tool), not the run's
        if outcome.status == "cancelled":
            raise KeyboardInterrupt  # Ctrl-C stops the parent's round too
        data = {"kind": brief.kind, "status": outcome.status, "turns": outcome.turns, "usage": outcome.usage}
        if outcome.status != "done":
            return ToolResult(False, f"The subagent stopped ({outcome.status}): {outcome.result}", data)
        answer = outcome.result
        if len(answer) > MAX_ANSWER_CHARS:
            answer = answer[:MAX_ANSWER_CHARS] + CUT_NOTE.format(more=len(answer) - MAX_ANSWER_CHARS)
        return ToolResult(True, answer or "(the subagent gave no answer)", data)
