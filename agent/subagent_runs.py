"""Subagent runs: the child loops behind the task tool (agent/planner/subagents.py).

A child is an AgentLoop of its own with a fresh conversation: the parent's system prompt plus a
note on its role, and the brief as its user message. It has its own todo list and shell state
(cwd, background jobs, killed when it ends) and shares the parent's backend, sandbox, redactor,
checkpoint store and permission policy. Its events go to the parent's stream as ChildEvents; its
usage is the parent's too, and before each round it checks the parent's limits as well as its own
turn cap.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from agent.backends.messages import Message
from agent.backends.rounds import Round
from agent.event_redaction import RedactedEvents
from agent.events import ChildEvent, FinalResult, SessionStart
from agent.loop import AgentLoop
from agent.planner.limits import Limits
from agent.planner.subagents import CHILD_MAX_TURNS, KINDS, MAX_DEPTH, Brief, TaskTool
from agent.tools.base import Permission, Tool, ToolContext
from agent.tools.shell_jobs import kill_all_jobs


class ChildLoop(AgentLoop):
    """A subagent's loop: what it spends, its parent spends, and the parent's budget is its budget."""

    def __init__(
        self, parent: AgentLoop, lock: threading.RLock, parent_id: str, *args: Any, **kwargs: Any
    ) -> None:
        self.parent = parent
        self.lock = lock
        self.parent_id = parent_id
        super().__init__(*args, **kwargs)
        self.reports_diff = False

    def _assistant_message(self, round_: Round, slots: list[Any], turn: int) -> Message:
        for i, slot in enumerate(slots):  # ids unlike the parent's own call_TURN_I ones
            if slot.call.id is None:
                slot.call.id = f"{self.parent_id}.{turn}_{i}"
        return super()._assistant_message(round_, slots, turn)

    def _add_usage(self, usage: Any) -> None:
        with self.lock:  # sibling children add to the same parent from their threads
            super()._add_usage(usage)
            self.parent._add_usage(usage)

    def check_budget(self, started: float) -> None:
        super().check_budget(started)
        self.parent.check_budget(self.parent.run_started)


class Subagents:
    """Starts the children of one loop (`owner`, set once that loop exists)."""

    def __init__(
        self, depth: int = 0, kinds: tuple[str, ...] = KINDS, lock: threading.RLock | None = None
    ) -> None:
        self.owner: AgentLoop | None = None
        self.depth = depth
        self.kinds = kinds
        self.lock = lock or threading.RLock()  # one for the whole tree: usage and the parent's stream

    def task_tool(self) -> TaskTool | None:
        """The task tool for the owner; None at the depth limit."""
        return TaskTool(self.run, self.kinds) if self.depth < MAX_DEPTH else None

    def run(self, brief: Brief) -> FinalResult:
        parent = self.owner
        assert parent is not None, "Subagents.owner is set when the session is assembled"
        explore = brief.kind == "explore"
        children = Subagents(self.depth + 1, ("explore",) if explore else self.kinds, self.lock)
        tools: list[Tool] = [
            tool
            for tool in parent.tools.values()
            if tool.name != TaskTool.name and (not explore or tool.permission == Permission.READ)
        ]
        task_tool = children.task_tool()
        if task_tool is not None:
            tools.append(task_tool)
        shared = parent.ctx
        ctx = ToolContext(
            shared.sandbox,
            checkpoint_store=shared.checkpoint_store,
            rg_available=shared.rg_available,
            session_redactor=shared.session_redactor,
        )
        emit = RedactedEvents(shared.redactor, self._forward_to(parent, brief.call_id))
        child = ChildLoop(
            parent,
            self.lock,
            brief.call_id,
            parent.backend,
            ctx,
            tools=tools,
            system_prompt=parent.system.text() + brief.role_note(),
            policy=parent.policy,
            limits=Limits(max_turns=CHILD_MAX_TURNS),
            emit=emit,
            params=parent.params,
            session_id=parent.session_id,
            budget=dataclasses.replace(parent.compactor.budget),
            test_commands=parent.test_commands,
            max_policy_refusals=parent.max_policy_refusals,
            hooks=parent.hooks.for_tool_calls(emit) if parent.hooks is not None else None,
        )
        children.owner = child
        try:
            return child.run(brief.prompt)
        finally:
            kill_all_jobs(ctx)  # no background command outlives the child that started it

    def _forward_to(self, parent: AgentLoop, parent_id: str) -> Any:
        def forward(event: Any) -> None:
            if isinstance(event, SessionStart | FinalResult):
                return  # the stream has one of each; the task call's result says how the child ended
            if not isinstance(event, ChildEvent):  # a grandchild's keeps its own parent
                event = ChildEvent(parent_id, event)
            with self.lock:
                parent.emit(event)

        return forward
