"""Helpers for turning our Messages into an endpoint's history."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.backends.messages import Message


@dataclass
class CallIds:
    """Ids for every tool call and the result answering it.

    Endpoints link results to calls by id, but calls parsed from raw XML have none (the M2 format
    matches results by order). Missing ids are made up, and results without one take the next
    unanswered call of the assistant message before them, in order.
    """

    calls: dict[int, list[str]] = field(default_factory=dict)  # message index -> id per call
    results: dict[int, str] = field(default_factory=dict)  # message index -> id it answers


def assign_call_ids(messages: list[Message]) -> CallIds:
    ids = CallIds()
    pending: list[str] = []
    for i, message in enumerate(messages):
        if message.role == "assistant":
            ids.calls[i] = [call.id or f"call_{i}_{j}" for j, call in enumerate(message.tool_calls)]
            pending = list(ids.calls[i])
        elif message.role == "tool":
            answer = message.tool_call_id or (pending[0] if pending else f"call_orphan_{i}")
            if answer in pending:
                pending.remove(answer)
            ids.results[i] = answer
    return ids
