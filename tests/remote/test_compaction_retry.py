"""A summary whose stream fails half-way is retried from scratch: the failed attempt's text is not kept."""

from __future__ import annotations

from agent.backends.base import GenerationParams
from agent.backends.events import RoundRetry, TextDelta
from agent.backends.messages import Message
from agent.planner.compaction import SUMMARY_PREFIX, Compactor, ContextBudget
from tests.remote.servers import Fault, Reply

SUMMARY = "SUMMARY: the user asked to fix calc.py; add() was changed and its test passes now."
DROP = Fault(drop_after=12)  # cuts the connection after part of the summary went out


def test_a_retried_summary_keeps_only_the_last_attempt(serve, backend_for):
    control = serve("split", [Reply("summing up", SUMMARY)] * 2, by_order=True)
    control.faults = [DROP]
    events = list(backend_for(control).stream([Message.user("hi")], [], GenerationParams()))
    retry = next(i for i, e in enumerate(events) if isinstance(e, RoundRetry))
    partial = "".join(e.text for e in events[:retry] if isinstance(e, TextDelta))
    assert partial and SUMMARY.startswith(partial) and partial != SUMMARY  # the fault cuts the text

    server = serve("split", [Reply("summing up", SUMMARY)] * 2, by_order=True)
    server.faults = [DROP]
    usage = []
    compactor = Compactor(backend_for(server), ContextBudget(200_000), usage.append)
    history = [
        Message.user("fix calc.py"),
        Message.assistant("done", reasoning="edited add()"),
        Message.user("thanks; and now?"),
    ]
    stage, _, _, compacted = compactor.fit(Message.system("You fix code."), history, [], force=True)
    assert stage == "summary" and len(server.generation_requests()) == 2
    assert compacted[0].text() == SUMMARY_PREFIX + SUMMARY
    assert compacted[1:] == history[2:]
