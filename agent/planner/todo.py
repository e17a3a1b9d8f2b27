"""The todo tool: the model keeps its plan as a short list of items with a status each.

The list lives in the tool context (and so in the session, through the todo_update event each
call returns for the loop to emit).
"""

from __future__ import annotations

from typing import Any

from agent.events import TodoUpdate
from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult

STATUSES = ("pending", "in_progress", "done")
_MARK = {"pending": "[ ]", "in_progress": "[~]", "done": "[x]"}


class TodoTool(ToolBase):
    name = "todo_write"
    description = (
        "Replace your task plan with this list. Use it for work with several steps: keep exactly one item "
        "in_progress while you work on it, mark items done as soon as they are finished."
    )
    parameters = {
        "type": "object",
        "properties": {
            "todos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string", "minLength": 1},
                        "status": {"type": "string", "enum": list(STATUSES)},
                    },
                    "required": ["content", "status"],
                },
            }
        },
        "required": ["todos"],
    }
    permission = Permission.READ  # touches no file
    parallel_safe = False  # each call replaces the plan: two at once would race

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        items = [{"content": str(t["content"]), "status": t["status"]} for t in args["todos"]]
        ctx.todos = items
        return ToolResult(
            True,
            render_todos(items) or "The plan is empty.",
            {"todos": items},
            events=[TodoUpdate(list(items))],
        )


def render_todos(items: list[dict[str, str]]) -> str:
    return "\n".join(f"{_MARK.get(item['status'], '[ ]')} {item['content']}" for item in items)
