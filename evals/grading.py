"""Grading one candidate patch, SWE-bench's way, with the known ways to fake a pass closed.

In a fresh container from the instance image (never the agent's container):
1. refuse patches that reach outside the repository, into .git, or create symlinks;
2. apply the candidate: strict `git apply`, else `git apply --3way`, else GNU patch with fuzz,
   each attempt in its own fresh container, so a failed attempt leaves nothing behind;
3. put every test-influencing file back as it was (pristine.py: tests, conftest.py, pytest/tox/
   setup.cfg/pyproject settings, *.pth, sitecustomize, package metadata) and drop bytecode caches;
4. apply the task's test patch (never seen by the agent);
5. run exactly the FAIL_TO_PASS and PASS_TO_PASS tests with a JUnit XML report (a pytest
   runner), or the spec's own test command on the test patch's files (Django's runtests.py,
   sympy's bin/test, ...);
6. resolved only if every one of them passed in the report AND the runner exited 0: a missing,
   skipped or xfailed test is a failure, and an exit status that disagrees with the report (a
   patch that exits 0 while tests fail, or fakes the report) is not a pass. Where swebench has a
   log parser for the repository (environments from its specs), the output is read with it too:
   for a pytest runner both readings must agree, else it is tampering and not a pass; for other
   runners the parser's reading is the verdict, as in the official harness.
OOM, timeouts and engine errors are infrastructure failures, reported apart and re-runnable.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from evals import junit
from evals.environments import GIT_ENV, REPO_DIR, InstanceImage
from evals.infra_failure import InfraFailure
from evals.swebench_specs import END_TEST_OUTPUT, START_TEST_OUTPUT, parse_test_log
from evals.task import Task
from sandbox.base import SandboxError
from sandbox.docker import DockerSandbox, Limits

GRADER_VERSION = 3  # bump when a change here can change a verdict: cached results are keyed by it
SCRATCH = "/var/tmp/mmx-eval"
PRISTINE_SCRIPT = (Path(__file__).parent / "pristine.py").read_bytes()
DEFAULT_LIMITS = Limits(cpus=2.0, memory="4g", pids=2048, disk=None)  # the repository lives in the image
TEST_OUTPUT_BYTES = 4_000_000
APPLY_SECONDS = 300.0
CANDIDATE, TEST_PATCH = f"{SCRATCH}/candidate.diff", f"{SCRATCH}/test.diff"
JUNIT_XML, EVAL_SCRIPT = f"{SCRATCH}/junit.xml", f"{SCRATCH}/eval.sh"
APPLY_METHODS = (
    ("strict", f"git apply --verbose --whitespace=nowarn {CANDIDATE}"),
    ("3way", f"git apply --verbose --3way --whitespace=nowarn {CANDIDATE}"),
    (
        "fuzzy",
        f"patch --batch --forward --fuzz=5 -p1 --no-backup-if-mismatch --reject-file=- -i {CANDIDATE}",
    ),
)


class GraderError(Exception):
    """A grading step of ours failed in the container (saving or restoring the test files)."""


@dataclass
class Grade:
    instance_id: str
    patch_is_None: bool = False
    patch_exists: bool = False
    patch_successfully_applied: bool = False
    apply_method: str | None = None
    resolved: bool = False
    tests_status: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # test id -> passed/failed/... in the report
    test_exit_code: int | None = None
    infra_failure: InfraFailure | None = None  # not the patch's fault
    notes: list[str] = field(default_factory=list)
    log: str = ""  # what the grader did and what the test run printed
    junit_xml: bytes | None = None
    eval_script: str = ""
    duration_s: float = 0.0


def infra(instance_id: str, kind: str, message: str, **fields: Any) -> Grade:
    return Grade(instance_id, infra_failure=InfraFailure(kind, message), **fields)


# -- reading a patch ------------------------------------------------------------------------------


def _unquote(path: str) -> str:
    """A path as git writes it: C-quoted ("a/t\\303\\251st") when it has special characters."""
    if not (len(path) >= 2 and path[0] == path[-1] == '"'):
        return path
    raw = path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def _strip_prefix(path: str) -> str | None:
    if path == "/dev/null":
        return None
    return path[2:] if path[:2] in ("a/", "b/") else path


def patch_paths(patch: str) -> list[str]:
    """Every repository-relative path a patch names (old and new), in order, without repeats.

    Hunk bodies are skipped by their line counts, so a removed line reading "-- x" is not a header.
    """
    paths: list[str] = []
    old_left = new_left = 0
    for line in patch.split("\n"):
        if old_left > 0 or new_left > 0:
            marker = line[:1]
            if marker in (" ", ""):
                old_left, new_left = old_left - 1, new_left - 1
                continue
            if marker == "-":
                old_left -= 1
                continue
            if marker == "+":
                new_left -= 1
                continue
            if marker == "\\":  # "\ No newline at end of file"
                continue
            old_left = new_left = 0  # a truncated hunk: read on as headers
        hunk = re.match(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@", line)
        if hunk:
            old_left = int(hunk.group(1) or 1)
            new_left = int(hunk.group(2) or 1)
            continue
        if line.startswith(("rename from ", "rename to ", "copy from ", "copy to ")):
            paths.append(_unquote(line.split(" ", 2)[2]))
            continue
        names: list[str] = []
        if line.startswith("diff --git "):
            match = re.match(r'^diff --git ("(?:[^"\\]|\\.)*"|\S+) ("(?:[^"\\]|\\.)*"|\S+)$', line)
            names = list(match.groups()) if match else []
        elif line.startswith(("--- ", "+++ ")):
            names = [line[4:].split("\t")[0].rstrip()]
        for name in names:
            path = _strip_prefix(_unquote(name))
            if path is not None:
                paths.append(path)
    return list(dict.fromkeys(paths))


def unsafe_patch_reason(patch: str) -> str | None:
    """Why this patch must not be applied at all, or None."""
    for path in patch_paths(patch):
        parts = path.replace("\\", "/").split("/")
        if path.startswith("/") or ".." in parts:
            return f"the patch reaches outside the repository ({path!r})"
        if any(part.lower() == ".git" for part in parts):
            return f"the patch changes git's own files ({path!r})"
    if re.search(r"^(new file mode|new mode) 120000\s*$", patch, flags=re.MULTILINE):
        return "the patch creates a symbolic link"
    return None


def runner_files(test_cmd: str) -> list[str]:
    """Repository files the test command runs (`bin/test`, `./tests/runtests.py`): restored like tests."""
    try:
        words = shlex.split(test_cmd)
    except ValueError:
        words = test_cmd.split()
    found = []
    for word in words:
        if (
            "/" in word
            and not word.startswith(("-", "/"))
            and "=" not in word
            and ".." not in word.split("/")
        ):
            found.append(word.removeprefix("./"))
    return found


# -- the verdict ----------------------------------------------------------------------------------

# swebench's log statuses in the JUnit reader's words, so both readings compare.
LOG_STATUS = {
    "PASSED": junit.PASSED,
    "FAILED": junit.FAILED,
    "ERROR": junit.ERROR,
    "SKIPPED": junit.SKIPPED,
    "XFAIL": junit.XFAILED,
}


def log_outcomes(task: Task, test_output: str) -> tuple[dict[str, str], list[str]]:
    """Each test's outcome as swebench's log parser for the repository reads the test output."""
    try:
        statuses = parse_test_log(task, test_output)
    except Exception as e:  # a parser of another project's choosing: its failure is a finding
        return dict.fromkeys(task.tests, junit.MISSING), [f"swebench's log parser failed: {e!r}"]
    return {t: LOG_STATUS.get(statuses.get(t, ""), junit.MISSING) for t in task.tests}, []


def disagreements(task: Task, from_junit: dict[str, str], from_log: dict[str, str]) -> list[str]:
    """Tests that one reading calls passed and the other does not."""
    return [t for t in task.tests if (from_junit.get(t) == junit.PASSED) != (from_log.get(t) == junit.PASSED)]


def evaluate(
    task: Task, outcomes: dict[str, str], exit_code: int | None, *, exit_status_counts: bool = True
) -> tuple[bool, dict, list[str]]:
    """(resolved, SWE-bench tests_status, notes) from the report's outcomes and the exit status."""

    def split(test_ids: list[str]) -> dict[str, list[str]]:
        return {
            "success": [t for t in test_ids if outcomes.get(t) == junit.PASSED],
            "failure": [t for t in test_ids if outcomes.get(t) != junit.PASSED],
        }

    tests_status = {
        "FAIL_TO_PASS": split(task.FAIL_TO_PASS),
        "PASS_TO_PASS": split(task.PASS_TO_PASS),
        "FAIL_TO_FAIL": {"success": [], "failure": []},
        "PASS_TO_FAIL": {"success": [], "failure": []},
    }
    all_passed = not tests_status["FAIL_TO_PASS"]["failure"] and not tests_status["PASS_TO_PASS"]["failure"]
    notes = []
    not_passed = {t: o for t, o in outcomes.items() if o != junit.PASSED}
    if not_passed:
        shown = ", ".join(f"{t} ({o})" for t, o in list(not_passed.items())[:10])
        notes.append(f"{len(not_passed)} test(s) did not pass: {shown}")
    if not exit_status_counts:  # the runner ran whole files: other tests in them may fail
        return all_passed, tests_status, notes
    if all_passed and exit_code != 0:
        notes.append(
            f"the test run exited {exit_code} although its report says every test passed: not a pass"
        )
    if not all_passed and exit_code == 0:
        notes.append("the test run exited 0 although tests failed: the exit status was tampered with")
    return all_passed and exit_code == 0, tests_status, notes


def pytest_selection(test_ids: list[str]) -> tuple[list[str], bool]:
    """(node ids to run, whether they select exactly the task's tests). pytest cannot address a cut
    id (junit.is_cut), so its whole test function runs; other parametrizations of it may then fail,
    and the exit status no longer says anything about the task's tests alone."""
    selected = [t.split("[", 1)[0] if junit.is_cut(t) else t for t in test_ids]
    return list(dict.fromkeys(selected)), not any(junit.is_cut(t) for t in test_ids)


def verdict(
    task: Task, exit_code: int | None, junit_xml: bytes | str | None, test_output: str
) -> tuple[dict[str, str], bool, dict, list[str]]:
    """(outcomes, resolved, tests_status, notes) from what a test run left: the JUnit report (a
    pytest runner's; a str says why there is none) and the output, read by swebench's log parser
    where the environment names one."""
    notes: list[str] = []
    from_junit = from_log = None
    if task.environment.test_runner == "pytest":
        try:
            if isinstance(junit_xml, str) or junit_xml is None:
                raise junit.JUnitError(junit_xml or "no report was written")
            from_junit = junit.outcomes_for(task.tests, junit_xml)
        except junit.JUnitError as e:
            notes.append(f"no usable JUnit report, so no test counts as passed: {e}")
            from_junit = dict.fromkeys(task.tests, junit.MISSING)
    if task.environment.log_parser:
        from_log, problems = log_outcomes(task, test_output)
        notes += problems
    outcomes = from_junit if from_junit is not None else from_log or {}
    _, exact = pytest_selection(task.tests)
    resolved, tests_status, verdict_notes = evaluate(
        task, outcomes, exit_code, exit_status_counts=from_junit is not None and exact
    )
    notes += verdict_notes
    if from_junit is not None and from_log is not None:
        differ = disagreements(task, from_junit, from_log)
        if differ:
            resolved = False
            shown = ", ".join(f"{t} (log {from_log[t]}, JUnit {from_junit[t]})" for t in differ[:10])
            notes.append(f"tampering: the test log and the JUnit report disagree, so not a pass: {shown}")
    return outcomes, resolved, tests_status, notes


# -- the container work ---------------------------------------------------------------------------


class Grader:
    def __init__(self, *, timeout: float = 1800.0, limits: Limits = DEFAULT_LIMITS):
        self.timeout = timeout
        self.limits = limits

    def grade(
        self, task: Task, instance: InstanceImage, patch: str | None, client: docker.DockerClient
    ) -> Grade:
        started = time.monotonic()
        try:
            result = self._grade(task, instance, patch, client)
        except GraderError as e:
            result = infra(task.instance_id, "grader", str(e))
            result.patch_is_None, result.patch_exists = patch is None, bool(patch and patch.strip())
        except (SandboxError, docker.errors.DockerException) as e:
            result = infra(task.instance_id, "daemon", f"the Docker engine failed during grading: {e}")
            result.patch_is_None, result.patch_exists = patch is None, bool(patch and patch.strip())
        result.duration_s = round(time.monotonic() - started, 3)
        return result

    def _grade(self, task: Task, instance: InstanceImage, patch: str | None, client) -> Grade:
        grade = Grade(
            task.instance_id, patch_is_None=patch is None, patch_exists=bool(patch and patch.strip())
        )
        if patch is None:
            grade.notes.append("no patch was submitted")
            return grade
        reason = unsafe_patch_reason(patch)
        if reason:
            grade.notes.append(f"not applied: {reason}")
            return grade
        log: list[str] = []
        box = self._apply(task, instance, patch, client, grade, log)
        if box is None:
            grade.notes.append("the patch does not apply (strict, 3-way or fuzzy)")
            grade.log = "\n".join(log)
            return grade
        try:
            return self._run_tests(task, instance, box, grade, log)
        finally:
            box.close()

    def _prepared_box(self, task: Task, instance: InstanceImage, patch: str, client) -> DockerSandbox:
        box = DockerSandbox.create(instance.tag, root=REPO_DIR, limits=self.limits, client=client)
        try:
            box.write_file(f"{SCRATCH}/pristine.py", PRISTINE_SCRIPT)
            box.write_file(CANDIDATE, patch.encode("utf-8", "surrogateescape"))
            box.write_file(TEST_PATCH, task.test_patch.encode("utf-8", "surrogateescape"))
            save = self._pristine_command("save", task)
            result = box.exec(save, timeout=APPLY_SECONDS, env=GIT_ENV)
            if result.exit_code != 0:
                raise GraderError(f"cannot save the pristine test files: {result.output.strip()[-2000:]}")
        except BaseException:
            box.close()
            raise
        return box

    @staticmethod
    def _pristine_command(action: str, task: Task) -> str:
        paths = [*patch_paths(task.test_patch), *runner_files(task.environment.test_cmd)]
        extras = " ".join(shlex.quote(p) for p in dict.fromkeys(paths))
        return f"python3 -I {SCRATCH}/pristine.py {action} {REPO_DIR} {SCRATCH}/pristine {extras}"

    def _apply(
        self, task, instance, patch: str, client, grade: Grade, log: list[str]
    ) -> DockerSandbox | None:
        if not patch.strip():
            grade.apply_method = "none"  # nothing to apply: the base as it is (validation runs this)
            log.append("empty patch: testing the base as it is")
            return self._prepared_box(task, instance, patch, client)
        for method, command in APPLY_METHODS:
            box = self._prepared_box(task, instance, patch, client)
            try:
                result = box.exec(command, timeout=APPLY_SECONDS, env=GIT_ENV)
            except BaseException:
                box.close()
                raise
            log.append(f"$ {command}\n{result.output.strip()}\n[exit {result.exit_code}]")
            if result.exit_code == 0:
                grade.patch_successfully_applied, grade.apply_method = True, method
                return box
            box.close()
        return None

    def _run_tests(
        self, task: Task, instance: InstanceImage, box: DockerSandbox, grade: Grade, log: list[str]
    ) -> Grade:
        restore = box.exec(self._pristine_command("restore", task), timeout=APPLY_SECONDS, env=GIT_ENV)
        if restore.exit_code != 0:
            raise GraderError(f"cannot restore the pristine test files: {restore.output.strip()[-2000:]}")
        summary = json.loads(restore.output.strip().splitlines()[-1])
        log.append(f"restored test-influencing files: {json.dumps(summary)}")
        touched = summary["removed"] + summary["restored"]
        if grade.patch_exists and touched:
            grade.notes.append(
                f"test-influencing files the patch changed were put back: {', '.join(touched[:20])}"
            )
        applied = box.exec(f"git apply --verbose {TEST_PATCH}", timeout=APPLY_SECONDS, env=GIT_ENV)
        log.append(
            f"$ git apply --verbose <test patch>\n{applied.output.strip()}\n[exit {applied.exit_code}]"
        )
        if applied.exit_code != 0:
            grade.infra_failure = InfraFailure("task", "the task's test patch does not apply to the base")
            grade.log = "\n".join(log)
            return grade
        grade.eval_script = self.eval_script(task, instance.activate)
        box.write_file(EVAL_SCRIPT, grade.eval_script.encode())
        run = box.exec(f"bash {EVAL_SCRIPT}", timeout=self.timeout, max_output=TEST_OUTPUT_BYTES)
        grade.test_exit_code = run.exit_code
        log.append(f"$ bash eval.sh\n{run.output}\n[exit {run.exit_code}]")
        grade.log = "\n".join(log)
        if run.oom_killed:
            grade.infra_failure = InfraFailure("oom", "the test run ran out of memory")
            return grade
        if run.timed_out:
            grade.infra_failure = InfraFailure("timeout", f"the test run took more than {self.timeout:g} s")
            return grade
        grade.notes += [f"environment: {note}" for note in task.environment.notes]
        junit_xml: bytes | str | None = None
        if task.environment.test_runner == "pytest":
            try:
                junit_xml = grade.junit_xml = box.read_file(JUNIT_XML)
            except SandboxError as e:
                junit_xml = f"cannot read it: {e}"
        grade.outcomes, grade.resolved, grade.tests_status, notes = verdict(
            task, run.exit_code, junit_xml, run.output
        )
        grade.notes += notes
        return grade

    @staticmethod
    def eval_script(task: Task, activate: str = "") -> str:
        environment = task.environment
        if environment.log_parser or environment.test_runner != "pytest" or activate:
            return Grader._spec_eval_script(task, activate)
        ids = " \\\n  ".join(shlex.quote(t) for t in pytest_selection(task.tests)[0])
        return (
            "#!/bin/bash\n"
            f"# Runs {task.instance_id}'s FAIL_TO_PASS and PASS_TO_PASS tests, after the candidate patch,\n"
            "# the restore of test-influencing files and the test patch.\n"
            f"cd {REPO_DIR}\n"
            f"exec {task.environment.test_cmd} -p no:cacheprovider "
            f"-o junit_family=xunit1 --junit-xml={JUNIT_XML} -rA -- \\\n  {ids}\n"
        )

    @staticmethod
    def _spec_eval_script(task: Task, activate: str) -> str:
        """The spec's own test command, between the harness's output markers (its log parsers and
        grading read them), after the spec's eval commands; the runner's exit status is kept."""
        from evals.swebench_specs import test_directives

        environment = task.environment
        if environment.test_runner == "pytest":
            ids = " \\\n  ".join(shlex.quote(t) for t in pytest_selection(task.tests)[0])
            command = (
                f"{environment.test_cmd} -p no:cacheprovider -o junit_family=xunit1 "
                f"--junit-xml={JUNIT_XML} -rA -- \\\n  {ids}"
            )
        else:
            directives = " ".join(shlex.quote(d) for d in test_directives(task))
            command = f"{environment.test_cmd} {directives}"
        lines = [
            "#!/bin/bash",
            f"# Runs {task.instance_id}'s tests with the test command of {environment.spec or 'its environment'},",
            "# after the candidate patch, the restore of test-influencing files and the test patch.",
            f"cd {REPO_DIR}",
            *([activate] if activate else []),
            *environment.eval_commands,
            f"echo {shlex.quote(START_TEST_OUTPUT)}",
            command,
            "status=$?",
            f"echo {shlex.quote(END_TEST_OUTPUT)}",
            "exit $status",
        ]
        return "\n".join(lines) + "\n"
