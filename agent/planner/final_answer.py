"""The checks a final answer passes before a run ends: the user's JSON schema, then our verification.

A failed check sends the model back to work with what went wrong (the schema's errors, the test
output's tail) as long as its retries last. Then the run ends: an answer that never validated with
status `invalid_output`; a failed or missing verification only with `--require-verified`
(status `unverified`); otherwise the result just says `verified: false`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.events import Status
from agent.planner.structured_output import check_answer
from agent.planner.verification import Verification, VerifyCommand, run_verification
from agent.secrets import Redactor
from sandbox.base import Sandbox

SCHEMA_RETRIES = 1  # one more try after an invalid final answer
SCHEMA_RETRY = (
    "Your final answer does not validate against the required JSON Schema: {problems}. Reply again with "
    "only the corrected JSON document."
)
VERIFY_RETRY = (
    "We ran the project's tests (`{command}`) and they failed ({how}). The end of their output:\n"
    "{tail}\nFix the cause, then finish again."
)


class AnswerRejected(Exception):
    """The run ends with this status: the final answer cannot be accepted."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclass
class AnswerRules:
    verify: VerifyCommand | None = None
    verify_timeout: float = 600.0
    verify_retries: int = 0
    require_verified: bool = False
    schema: dict[str, Any] | None = None


class AnswerGate:
    def __init__(
        self,
        rules: AnswerRules,
        sandbox: Sandbox,
        redactor: Redactor,
        env: dict[str, str],
        emit: Callable[[Any], None],
    ) -> None:
        self.rules, self.sandbox, self.redactor, self.env, self.emit = rules, sandbox, redactor, env, emit
        self.verification: Verification | None = None
        self.value: Any = None  # the parsed answer, under a schema
        self._schema_retries = SCHEMA_RETRIES
        self._verify_retries = rules.verify_retries

    def plan(self) -> str:
        """What will verify the run, said when it starts."""
        chosen = self.rules.verify
        if chosen is None:
            return (
                "verification: no test command found in the repository (give --verify CMD); "
                "verified can only come from the agent's own test run"
            )
        how = {"flag": "from --verify", "config": "from verify_command"}.get(
            chosen.source, f"detected: {chosen.rule}"
        )
        when = "at the end" if self.rules.require_verified else "at the end if files changed"
        return f"verification: `{chosen.command}` ({how}) runs {when}"

    def review(self, answer: str, changed_files: Callable[[], bool]) -> str | None:
        """None when the answer stands; else the message that sends the model back to work.
        Raises AnswerRejected when the answer cannot stand and no retry is left."""
        rules = self.rules
        if rules.schema is not None:
            value, problems = check_answer(answer, rules.schema)
            if problems:
                if self._schema_retries <= 0:
                    raise AnswerRejected(
                        "invalid_output",
                        "the final answer does not validate against --json-schema: " + "; ".join(problems),
                    )
                self._schema_retries -= 1
                return SCHEMA_RETRY.format(problems="; ".join(problems))
            self.value = value
        if rules.verify is None or not (rules.require_verified or changed_files()):
            return None
        verification = run_verification(
            self.sandbox, rules.verify, timeout=rules.verify_timeout, env=self.env, redactor=self.redactor
        )
        self.verification = verification
        self.emit(Status(verification.summary(), "info" if verification.passed else "warning"))
        if verification.passed or self._verify_retries <= 0:
            return None
        self._verify_retries -= 1
        how = "it timed out" if verification.exit_code is None else f"exit code {verification.exit_code}"
        return VERIFY_RETRY.format(command=verification.command, how=how, tail=verification.output_tail)

    def unverified(self) -> str | None:
        """Why the run is not verified, when --require-verified makes that the end of it."""
        if not self.rules.require_verified:
            return None
        if self.rules.verify is None:
            return "no test command to verify with: give --verify CMD (or verify_command in the config)"
        if self.verification is None:
            return f"the verification `{self.rules.verify.command}` did not run"
        if not self.verification.passed:
            return self.verification.summary()
        return None
