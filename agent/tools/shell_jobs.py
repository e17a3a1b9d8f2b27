"""Background jobs for the bash tool: start, read new output, kill; and bash_output, bash_kill.

Jobs are started through `sandbox.exec` only, so the Docker sandbox works the same: `setsid
nohup` detaches the job into its own session and process group, its output goes to a file in a
per-session temporary directory, and the job's wrapper records its pid and exit code next to it.
Reading returns what was written since the last read; killing sends TERM to the whole group,
then KILL if anything lingers. `kill_all_jobs` is for the end of a session.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult

OUTPUT_LIMIT = 30_000  # bytes of new output returned per read; older bytes are skipped

q = shlex.quote


@dataclass
class Job:
    id: str
    command: str
    base: str  # file prefix: .out (output), .pid, .exit
    pgid: int
    offset: int = 0  # bytes of output already returned
    killed: bool = False


# Whether any live process is left in a process group. Zombies do not count: when PID 1 does not
# reap orphans (common in containers), `kill -0` would call a finished job running forever.
_GROUP_ALIVE = r"""group_alive() {
  if [ -d /proc/self ]; then
    local pg=$1 line s
    for s in /proc/[0-9]*/stat; do
      { read -r line < "$s"; } 2>/dev/null || continue  # processes come and go
      set -- ${line##*) }
      [ "$3" = "$pg" ] && [ "$1" != Z ] && return 0
    done
    return 1
  fi
  kill -0 -- "-$1" 2>/dev/null
}
"""


def _jobs(ctx: ToolContext) -> dict[str, Job]:
    return ctx.shell.jobs


def _jobs_dir(ctx: ToolContext) -> str:
    if ctx.shell.jobs_dir is None:
        made = ctx.sandbox.exec('mktemp -d "${TMPDIR:-/tmp}/mmx-agent-jobs.XXXXXX"', timeout=30)
        if made.exit_code != 0:
            raise RuntimeError(f"cannot create a directory for background jobs: {made.output.strip()}")
        ctx.shell.jobs_dir = made.output.strip()
    return ctx.shell.jobs_dir


def start_job(ctx: ToolContext, command: str, *, cwd: str, env: dict[str, str], note: str = "") -> ToolResult:
    """Starts `command` detached in `cwd`; the caller has already screened it."""
    jobs = _jobs(ctx)
    job_id = f"job{len(jobs) + 1}"
    base = f"{_jobs_dir(ctx)}/{job_id}"
    # The exit code is renamed into place so a reader never sees a half-written file.
    wrapper = 'echo $$ > "$1.pid"; bash -c "$2"; echo $? > "$1.exit.tmp"; mv "$1.exit.tmp" "$1.exit"'
    script = (
        f"cd {q(cwd)} || exit 1\n"
        f"setsid nohup bash -c {q(wrapper)} mmx-job {q(base)} {q(command)} "
        f"> {q(base + '.out')} 2>&1 < /dev/null &\n"
        f"for _ in $(seq 100); do [ -s {q(base + '.pid')} ] && break; sleep 0.05; done\n"
        f"cat {q(base + '.pid')}\n"
    )
    started = ctx.sandbox.exec(script, timeout=60, env=env)
    pid_text = started.output.strip().splitlines()[-1] if started.output.strip() else ""
    if started.exit_code != 0 or not pid_text.isdigit():
        return ToolResult(False, f"could not start the background job: {started.output.strip()}")
    job = Job(id=job_id, command=command, base=base, pgid=int(pid_text))
    jobs[job_id] = job
    return ToolResult(
        True,
        f"{note}started {job_id} (process group {job.pgid}); read its output with bash_output, stop it with bash_kill",
        {"job_id": job_id, "pgid": job.pgid},
    )


def read_job(ctx: ToolContext, job: Job) -> tuple[str, str, int]:
    """(status, new output since the last read, bytes skipped because there was too much)."""
    script = (
        _GROUP_ALIVE
        + f"f={q(job.base)}\n"
        + 'if [ -f "$f.exit" ]; then st="exited:$(cat "$f.exit")"\n'
        + f"elif group_alive {job.pgid}; then st=running\n"
        + 'elif [ -f "$f.exit" ]; then st="exited:$(cat "$f.exit")"  # it ended between the checks\n'
        + "else st=gone\nfi\n"
        + 'size=$(wc -c < "$f.out")\n'
        + f"start=$(( size - {job.offset} > {OUTPUT_LIMIT} ? size - {OUTPUT_LIMIT} : {job.offset} ))\n"
        + 'printf "%s %s %s\\n" "$st" "$size" "$start"\n'
        + 'tail -c +$((start + 1)) "$f.out" | head -c $((size - start))\n'
    )
    result = ctx.sandbox.exec(script, timeout=60, max_output=OUTPUT_LIMIT + 4096, redactor=ctx.redactor)
    header, _, output = result.output.partition("\n")
    status, size, start = header.split()
    skipped = int(start) - job.offset
    job.offset = int(size)
    # Each read is a cut: what may be the start of a secret is left for the next read (while the
    # job may still write the rest), and a secret cut through by skipped bytes is dropped.
    if skipped:
        output = output[ctx.redactor.unfinished_start(output) :]
    if status == "running":
        held = output[ctx.redactor.unfinished_end(output) :]
        output = output[: len(output) - len(held)]
        job.offset -= len(held.encode("utf-8", "surrogateescape"))
    if status.startswith("exited:"):
        status = f"exited with code {status.split(':', 1)[1]}"
    elif status == "gone":
        status = "killed" if job.killed else "ended without recording an exit code (killed)"
    return status, output, skipped


def _find_job(ctx: ToolContext, job_id: str) -> Job | ToolResult:
    job = _jobs(ctx).get(job_id)
    if job is None:
        known = ", ".join(_jobs(ctx)) or "none"
        return ToolResult(False, f"no background job {job_id!r} in this session (jobs: {known})")
    return job


class BashOutput(ToolBase):
    name = "bash_output"
    description = (
        "Show the new output of a background job since the last call, and whether it is still running."
    )
    parameters = {
        "type": "object",
        "properties": {"id": {"type": "string", "description": "The job id bash returned, e.g. job1."}},
        "required": ["id"],
        "additionalProperties": False,
    }
    permission = Permission.READ

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        job = _find_job(ctx, args["id"])
        if isinstance(job, ToolResult):
            return job
        status, output, skipped = read_job(ctx, job)
        skipped_note = f"[{skipped} earlier bytes skipped]\n" if skipped else ""
        text = f"[{job.id}: {status}]\n{skipped_note}{output or '(no new output)'}"
        return ToolResult(True, text, {"job_id": job.id, "status": status, "running": status == "running"})


class BashKill(ToolBase):
    name = "bash_kill"
    description = "Stop a background job: its whole process group gets TERM, then KILL if it lingers."
    parameters = BashOutput.parameters
    permission = Permission.EXECUTE

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        job = _find_job(ctx, args["id"])
        if isinstance(job, ToolResult):
            return job
        kill_job(ctx, job)
        status, output, _ = read_job(ctx, job)
        return ToolResult(
            True, f"[{job.id}: {status}]\n{output or '(no new output)'}", {"job_id": job.id, "status": status}
        )


def kill_job(ctx: ToolContext, job: Job) -> None:
    ctx.sandbox.exec(
        _GROUP_ALIVE
        + f"kill -TERM -- -{job.pgid} 2>/dev/null\n"
        + f"for _ in $(seq 40); do group_alive {job.pgid} || exit 0; sleep 0.05; done\n"
        + f"kill -KILL -- -{job.pgid} 2>/dev/null; exit 0\n",
        timeout=30,
    )
    job.killed = True


def kill_all_jobs(ctx: ToolContext) -> None:
    """For the end of a session: no background job outlives the agent."""
    for job in _jobs(ctx).values():
        kill_job(ctx, job)
