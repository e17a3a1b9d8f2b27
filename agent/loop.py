"""The agent loop: one user turn, then model rounds until the model answers without calling a tool.

Each round streams the backend's events, builds the assistant message (reasoning kept: the
format layer, not the loop, decides what the model sees again), runs the calls in order (runs of
read-only calls concurrently, results still appended in call order) and appends the results.

Recoverable problems (unknown tool, bad arguments, a failed tool, a malformed call, a refused
command) go back to the model as tool results. Terminating ones (limits, a loop, repeated policy
refusals, the backend gone) end the run with a status. Ctrl-C (KeyboardInterrupt) ends the round:
calls that did not finish are answered as cancelled, so the session stays a valid conversation.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent.backends.base import (
    Backend,
    BackendError,
    ContextWindowExceeded,
    GenerationParams,
    PromptTooLong,
)
from agent.backends.events import BackendEvent, StreamEnd, ToolCallEvent, Usage
from agent.backends.messages import Message, ToolCall
from agent.backends.rounds import Round, collect
from agent.errors import describe, report_unexpected
from agent.events import (
    AssistantMessage,
    Compaction,
    FinalResult,
    Status,
    ToolCallStarted,
    ToolResultEvent,
    UserMessage,
)
from agent.permissions import PermissionPolicy
from agent.planner.compaction import Compactor, ContextBudget, ContextExhausted
from agent.planner.final_answer import AnswerGate, AnswerRejected
from agent.planner.hooks import Hooks
from agent.planner.limits import Limits, LoopDetector
from agent.planner.todo import render_todos
from agent.tools.base import Tool, ToolContext, ToolResult, current_call_id, openai_tool
from agent.tools.registry import run_tool
from agent.workspace_diff import diff_since, snapshot

DEFAULT_TEST_COMMANDS = [
    r"(^|[\s;&|(])(python[\d.]*\s+-m\s+)?(pytest|py\.test|unittest|tox|nox)\b",
    r"\b(npm|yarn|pnpm|bun)\s+(run\s+)?test\b",
    r"\b(go|cargo|dotnet|mvn|gradle|\./gradlew|mix|swift)\s+test\b",
    r"\bmake\s+(test|check)\b",
    r"\b(ctest|rspec|phpunit|prove)\b",
]
MAX_REJECTIONS = 3  # "prompt too long" answers in a row before the run gives up
MAX_STOP_RETURNS = 3  # times stop hooks may send the model back to work in one run
LOOP_WARNING = (
    "\n[mmx-agent] This is the {n}th identical call in a row with the same arguments. It will not help to "
    "repeat it: change your approach. One more identical call ends the run."
)
NUDGE = "[mmx-agent] Your last reply could not be used: {errors} Continue the task."
CUT_OFF = (
    "Your reply was cut off at the output token limit before it finished (no answer, no tool call); "
    "keep your reasoning shorter."
)


Emit = Callable[[Any], None]


@dataclass
class _Slot:
    """One call the model made in a round; `error` set when it was malformed and must not run."""

    call: ToolCall
    error: str | None = None
    result: ToolResult | None = None
    warning: str = ""  # appended to the result (loop detection)


class RunStopped(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class AgentLoop:
    def __init__(
        self,
        backend: Backend,
        ctx: ToolContext,
        *,
        tools: list[Tool],
        system_prompt: str,
        policy: PermissionPolicy,
        limits: Limits | None = None,
        emit: Emit = lambda event: None,
        params: GenerationParams | None = None,
        session_id: str = "",
        messages: list[Message] | None = None,
        budget: ContextBudget | None = None,
        test_commands: list[str] | None = None,
        max_policy_refusals: int = 3,
        answer_gate: AnswerGate | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.backend = backend
        self.ctx = ctx
        self.tools = {tool.name: tool for tool in tools}
        self.tool_defs = [openai_tool(tool) for tool in tools]
        self.system = Message.system(system_prompt)
        self.policy = policy
        self.limits = limits or Limits()
        self.emit = emit
        self.params = params or GenerationParams()
        self.session_id = session_id
        self.messages: list[Message] = list(messages or [])
        self.compactor = Compactor(backend, budget or ContextBudget(backend.context_window), self._add_usage)
        self.test_commands = [re.compile(p) for p in (test_commands or DEFAULT_TEST_COMMANDS)]
        self.max_policy_refusals = max_policy_refusals
        self.answer_gate = answer_gate  # the schema and verification a final answer must pass
        self.hooks = hooks
        self.hook_context = ""  # from session_start hooks: goes to the model with the next prompt
        self._stop_returns = 0
        self.usage = {"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}
        self.cost: float | None = None
        # Called at the end of every run, before the final result is emitted (e.g. syncing a
        # copied Docker workspace back to the host). A hook that returns a diff replaces the
        # result's: a copied workspace's diff is made on the host, not by programs in the container.
        self.before_result: list[Callable[[], str | None]] = []
        self._turn_calls = 0
        self.reports_diff = True  # a subagent's changes show in its parent's diff, not its own
        self.run_started = time.monotonic()  # of the current run: subagents check its budget

    # ------------------------------------------------------------------ one run
    def run(self, text: str) -> FinalResult:
        started = self.run_started = time.monotonic()
        start_tree = snapshot(self.ctx) if self.reports_diff else None
        turns, answer, verified, refusals = 0, "", False, 0
        loops = LoopDetector()
        status, detail = "done", ""
        self._stop_returns = 0
        try:
            text = self._submitted(text)
            self.messages.append(Message.user(text))
            self.emit(UserMessage(text))
            if self.answer_gate is not None:
                self.emit(Status(self.answer_gate.plan()))
            rejections = 0
            while True:
                self._check_limits(turns, started)
                self._fit_context()
                try:
                    round_, slots = self._model_round()
                except PromptTooLong as exc:  # the server counts more than we did: compact, retry
                    rejections += 1
                    self._after_rejection(exc, rejections)
                    continue
                rejections = 0
                turns += 1
                message = self._assistant_message(round_, slots, turns)
                self.messages.append(message)
                self.emit(AssistantMessage(message.to_openai()))
                if not slots:
                    if round_.stop_reason == "length":  # a truncated reply is not the answer
                        round_.loose_errors.append(CUT_OFF)
                    if round_.loose_errors:
                        nudge = NUDGE.format(errors=" ".join(round_.loose_errors))
                        self.messages.append(Message.user(nudge))
                        self.emit(UserMessage(nudge))
                        continue
                    answer = message.text()
                    retry = self._review(answer, start_tree) or self._stop_hooks()
                    if retry is not None:
                        self.messages.append(Message.user(retry))
                        self.emit(UserMessage(retry))
                        continue
                    break
                stop = self._run_calls(slots, loops)
                for slot in slots:
                    assert slot.result is not None
                    tool = self.tools.get(slot.call.name)
                    if slot.result.data.get("refused") or slot.result.data.get("denied"):
                        refusals += 1
                    if tool is None:
                        continue
                    command = tool.command(slot.call.arguments)
                    if tool.edits_files and slot.result.ok:
                        verified = False  # tests must run again after the last edit
                    elif command is not None and self._is_test_command(command):
                        verified = slot.result.ok
                if stop:
                    raise RunStopped("loop_detected", "the same call was repeated after a warning")
                if refusals >= self.max_policy_refusals:
                    raise RunStopped("blocked", f"{refusals} calls were refused by policy or the firewall")
        except (RunStopped, AnswerRejected) as stop:
            status, detail = stop.status, str(stop)
        except ContextWindowExceeded as exc:
            status, detail = "context_exhausted", str(exc)
        except BackendError as exc:
            status, detail = "backend_unavailable", str(exc)
        except KeyboardInterrupt:
            status, detail = "cancelled", "cancelled by the user"
        except Exception as exc:  # a bug of ours: the run still ends with a result and a session
            report_unexpected(exc)
            status, detail = "error", f"internal error: {describe(exc)}"
        gate = self.answer_gate
        verification = gate.verification if gate is not None else None
        if verification is not None:
            verified = verification.passed  # ours, not the model's own test run
        if status == "done" and gate is not None and (why := gate.unverified()) is not None:
            status, detail = "unverified", why
        if status == "done" and gate is not None and gate.rules.schema is not None:
            answer = gate.value
        elif status == "done" and self.policy.mode == "plan" and self.ctx.todos:
            answer = f"{answer}\n\nPlan:\n{render_todos(self.ctx.todos)}"
        if status != "done":
            self.emit(Status(f"run ended: {status}: {detail}", level="error"))
        diff = diff_since(self.ctx, start_tree)
        for hook in self.before_result:
            applied = hook()
            if applied is not None:
                diff = applied
        result = FinalResult(
            status=status,
            result=answer if status == "done" else detail,
            diff=diff,
            turns=turns,
            usage=dict(self.usage),
            cost=self.cost,
            session_id=self.session_id,
            duration_ms=int((time.monotonic() - started) * 1000),
            verified=verified,
            confinement=self.ctx.sandbox.confinement,
            verification=verification.to_json() if verification is not None else None,
        )
        self.emit(result)
        return result

    def _review(self, answer: str, start_tree: str | None) -> str | None:
        """None when the final answer stands; else what sends the model back to work."""
        if self.answer_gate is None:
            return None
        return self.answer_gate.review(answer, lambda: bool(diff_since(self.ctx, start_tree).strip()))

    def _submitted(self, text: str) -> str:
        """The prompt as the model gets it: with what session_start and user_prompt_submit hooks
        added; RunStopped when a user_prompt_submit hook blocks it."""
        context, self.hook_context = self.hook_context, ""
        if self.hooks is not None and self.hooks.has("user_prompt_submit"):
            reply = self.hooks.run("user_prompt_submit", prompt=text)
            if reply.blocked:
                raise RunStopped("blocked", f"a user_prompt_submit hook refused the prompt: {reply.feedback}")
            context = f"{context}\n{reply.context}".strip()
        return f"{text}\n\n[mmx-agent] Context from hooks:\n{context}" if context else text

    def _stop_hooks(self) -> str | None:
        """What sends the model back to work when a stop hook exits 2, a few times a run at most."""
        if self.hooks is None or not self.hooks.has("stop"):
            return None
        reply = self.hooks.run("stop", stop_hook_active=self._stop_returns > 0)
        if not reply.blocked:
            return None
        if self._stop_returns >= MAX_STOP_RETURNS:
            self.emit(
                Status(f"stop hooks sent the model back {MAX_STOP_RETURNS} times; the run ends", "warning")
            )
            return None
        self._stop_returns += 1
        return f"[mmx-agent] A stop hook sent you back to work:\n{reply.feedback}"

    def _check_limits(self, turns: int, started: float) -> None:
        if turns >= self.limits.max_turns:
            raise RunStopped("limit_reached", f"reached the limit of {self.limits.max_turns} turns")
        self.check_budget(started)

    def check_budget(self, started: float) -> None:
        """RunStopped when the run that began at `started` has spent its time, tokens or cost."""
        limits = self.limits
        if limits.max_wall_seconds is not None and time.monotonic() - started > limits.max_wall_seconds:
            raise RunStopped("limit_reached", f"reached the wall-time limit of {limits.max_wall_seconds:g} s")
        spent = self.usage["input_tokens"] + self.usage["output_tokens"]
        if limits.max_tokens is not None and spent >= limits.max_tokens:
            raise RunStopped("limit_reached", f"used {spent} tokens, the limit is {limits.max_tokens}")
        if limits.max_cost is not None and self.cost is not None and self.cost >= limits.max_cost:
            raise RunStopped("limit_reached", f"spent ${self.cost:.4f}, the limit is ${limits.max_cost:.4f}")

    def _fit_context(self, force: bool = False) -> Compaction | None:
        fitted = self.compactor.fit(self.system, self.messages, self.tool_defs, force=force)
        if fitted is None:
            return None
        stage, before, after, messages = fitted
        self.messages = messages
        event = Compaction(stage, before, after, [m.to_openai() for m in messages])
        self.emit(event)
        return event

    def _after_rejection(self, exc: PromptTooLong, rejections: int) -> None:
        """Shrinks the history after the server refused the prompt as too long; ContextExhausted (the
        run ends, with the server's numbers) when there is nothing left to shrink but the current turn."""
        numbers = exc.numbers()
        self.emit(Status(f"the server refused the prompt as too long ({numbers}); compacting", "warning"))
        budget = self.compactor.budget
        if exc.allowed and exc.allowed < budget.window:  # the server's window, not what we assumed
            budget.window = exc.allowed
        if rejections > MAX_REJECTIONS:
            raise ContextExhausted(f"the prompt still does not fit after compacting: {numbers}")
        try:
            compacted = self._fit_context(force=True)
        except ContextExhausted as inner:
            raise ContextExhausted(f"{inner} ({numbers})") from None
        if compacted is None:
            raise ContextExhausted(f"the current turn alone does not fit: {numbers}")

    def compact_now(self) -> str:
        """Summarise everything before the latest user message (the /compact command)."""
        event = self._fit_context(force=True)
        if event is None:
            return "nothing older than the current turn to compact"
        return f"compacted: {event.tokens_before} -> {event.tokens_after} tokens"

    # ------------------------------------------------------------------ the model's round
    def _model_round(self) -> tuple[Round, list[_Slot]]:
        """The model's next round, shown as it streams; its calls as slots to run."""
        stream = self.backend.stream([self.system, *self.messages], self.tool_defs, self.params)
        round_ = collect(stream, self._on_stream_event)
        slots = [
            _Slot(ToolCall(c.name, c.arguments, c.id))
            if isinstance(c, ToolCallEvent)
            else _Slot(ToolCall(c.name or "", c.arguments or {}), error=c.message)
            for c in round_.calls
        ]
        return round_, slots

    def _on_stream_event(self, event: BackendEvent) -> None:
        if isinstance(event, Usage):
            self._add_usage(event)
        if not isinstance(event, ToolCallEvent | StreamEnd):  # calls are announced when they run
            self.emit(event)

    def _assistant_message(self, round_: Round, slots: list[_Slot], turn: int) -> Message:
        for i, slot in enumerate(slots):
            if slot.call.id is None:
                slot.call.id = f"call_{turn}_{i}"
        message = Message.assistant(
            round_.text, reasoning=round_.reasoning or None, tool_calls=[s.call for s in slots]
        )
        message.reasoning_details = round_.reasoning_details  # lets the endpoint get its own form back
        return message

    def _add_usage(self, usage: Usage) -> None:
        self.usage["input_tokens"] += usage.input_tokens
        self.usage["output_tokens"] += usage.output_tokens
        self.usage["reasoning_tokens"] += usage.reasoning_tokens
        if usage.cost_usd is not None:
            self.cost = (self.cost or 0.0) + usage.cost_usd

    # ------------------------------------------------------------------ tools
    def _run_calls(self, slots: list[_Slot], loops: LoopDetector) -> bool:
        """Runs the round's calls; True when loop detection says the run must stop."""
        stop = False
        runnable: list[_Slot] = []
        for slot in slots:
            verdict = loops.observe(slot.call.name, slot.call.arguments)
            if slot.error is not None:
                slot.result = ToolResult(False, slot.error, {"error": "format"})
            elif verdict == "stop":
                slot.result = ToolResult(False, "Not run: this exact call was repeated after a warning.", {})
                stop = True
            else:
                slot.result = self._hook_refusal(slot.call) or self._permission_refusal(slot.call)
                if slot.result is None:
                    runnable.append(slot)
            if verdict == "warn":
                slot.warning = LOOP_WARNING.format(n=loops.warn_at)
        try:
            self._execute(runnable)
        finally:
            for slot in slots:
                if slot.result is None:
                    slot.result = ToolResult(False, "Cancelled by the user before this call finished.", {})
                if slot.warning:
                    slot.result = ToolResult(
                        slot.result.ok, slot.result.output + slot.warning, slot.result.data
                    )
                self._append_result(slot)
        return stop

    def _hook_refusal(self, call: ToolCall) -> ToolResult | None:
        if self.hooks is None or call.name not in self.tools or not self.hooks.has("pre_tool_use"):
            return None
        reply = self.hooks.run("pre_tool_use", call.name, tool_input=call.arguments)
        if not reply.blocked:
            return None
        return ToolResult(
            False, f"Not run: a pre_tool_use hook blocked it:\n{reply.feedback}", {"denied": True}
        )

    def _permission_refusal(self, call: ToolCall) -> ToolResult | None:
        tool = self.tools.get(call.name)
        if tool is None:
            return None  # run_tool answers unknown tools with the list of real ones
        decision = self.policy.decide(call.name, tool.permission, call.arguments)
        if decision.allowed:
            return None
        return ToolResult(False, f"Not run: {decision.reason}", {"denied": True})

    def _execute(self, runnable: list[_Slot]) -> None:
        i = 0
        while i < len(runnable):
            group = [runnable[i]]
            if self._parallel_safe(runnable[i]):
                while i + len(group) < len(runnable) and self._parallel_safe(runnable[i + len(group)]):
                    group.append(runnable[i + len(group)])
            for slot in group:
                self.emit(ToolCallStarted(slot.call.id or "", slot.call.name, slot.call.arguments))
            if len(group) == 1:
                group[0].result = self._run_one(group[0].call)
            else:
                with ThreadPoolExecutor(max_workers=min(8, len(group))) as pool:
                    for slot, result in zip(
                        group, pool.map(lambda s: self._run_one(s.call), group), strict=True
                    ):
                        slot.result = result
            i += len(group)

    def _parallel_safe(self, slot: _Slot) -> bool:
        tool = self.tools.get(slot.call.name)
        return tool is not None and tool.runs_in_parallel(slot.call.arguments)

    def _run_one(self, call: ToolCall) -> ToolResult:
        token = current_call_id.set(call.id or "")
        try:
            result = run_tool(call.name, call.arguments, self.ctx, tools=list(self.tools.values()))
        finally:
            current_call_id.reset(token)
        for event in result.events:
            self.emit(event)
        if result.ok and self.hooks is not None and self.hooks.has("post_tool_use"):
            tool_result = {"ok": result.ok, "output": result.output}
            reply = self.hooks.run(
                "post_tool_use", call.name, tool_input=call.arguments, tool_result=tool_result
            )
            if reply.blocked:
                result = dataclasses.replace(
                    result, output=f"{result.output}\n\n[post_tool_use hook]\n{reply.feedback}"
                )
        return result

    def _append_result(self, slot: _Slot) -> None:
        assert slot.result is not None
        call = slot.call
        self.messages.append(Message.tool(slot.result.output, tool_call_id=call.id, name=call.name))
        self.emit(
            ToolResultEvent(call.id or "", call.name, slot.result.ok, slot.result.output, slot.result.data)
        )

    def _is_test_command(self, command: str) -> bool:
        return any(pattern.search(command) for pattern in self.test_commands)
