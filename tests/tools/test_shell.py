"""The bash tool and background jobs, on real processes."""

from __future__ import annotations

import time

from agent.tools.shell import OUTPUT_LIMIT, Bash, BashKill, BashOutput
from agent.tools.shell_jobs import kill_all_jobs

bash, bash_output, bash_kill = Bash(), BashOutput(), BashKill()


def _alive(ctx, pid: int) -> bool:
    """Whether `pid` is a live process (not a zombie) as the sandbox sees it: a container has its
    own pid namespace, so the host's /proc would name some other process."""
    stat = ctx.sandbox.exec(f"cat /proc/{pid}/stat 2>/dev/null", timeout=30).output
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _dies(ctx, pid: int) -> bool:
    """Whether pid is gone or a zombie; a killed process takes a moment to finish exiting."""
    deadline = time.monotonic() + 30  # an upper bound for a loaded machine, not a timing claim
    while _alive(ctx, pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _alive(ctx, pid)


def _poll_job(ctx, job_id: str, until, timeout: float = 60.0):
    """Reads a job until `until(collected_output, status)`; the timeout only guards a hang."""
    collected, deadline = "", time.monotonic() + timeout
    while True:
        result = bash_output.run({"id": job_id}, ctx)
        body = result.output.split("\n", 1)[1]
        if body not in ("(no new output)",):
            collected += body
        if until(collected, result.data["status"]) or time.monotonic() > deadline:
            return collected, result.data["status"]
        time.sleep(0.05)


def test_output_and_exit_code(ctx):
    ok = bash.run({"command": "echo hello; echo oops >&2"}, ctx)
    assert ok.ok and ok.output == "hello\noops" and ok.data["exit_code"] == 0
    failed = bash.run({"command": "echo partial; exit 4"}, ctx)
    assert not failed.ok and failed.output == "partial\n[exit code 4]" and failed.data["exit_code"] == 4
    assert bash.run({"command": "true"}, ctx).output == "(no output)"


def test_working_directory_persists_between_calls(ctx, workspace):
    assert bash.run({"command": "mkdir -p a/b && cd a/b"}, ctx).ok
    result = bash.run({"command": "pwd"}, ctx)
    assert result.output == str(workspace / "a" / "b") and result.data["cwd"] == str(workspace / "a" / "b")
    bash.run({"command": "cd .."}, ctx)
    assert bash.run({"command": "pwd"}, ctx).output == str(workspace / "a")


def test_cwd_is_kept_when_the_command_exits_early(ctx, workspace):
    bash.run({"command": "mkdir sub && cd sub"}, ctx)
    bash.run({"command": "cd /; exit 1"}, ctx)
    assert bash.run({"command": "pwd"}, ctx).output == str(workspace / "sub")


def test_leaving_the_workspace_resets_the_cwd_to_the_root(ctx, workspace, tmp_path):
    result = bash.run({"command": f"cd {tmp_path}"}, ctx)
    assert "left the workspace" in result.output
    assert bash.run({"command": "pwd"}, ctx).output == str(workspace)


def test_a_deleted_cwd_falls_back_to_the_root(ctx, workspace):
    bash.run({"command": "mkdir gone && cd gone"}, ctx)
    (workspace / "gone").rmdir()
    result = bash.run({"command": "pwd"}, ctx)
    assert "no longer exists" in result.output and result.output.endswith(str(workspace))


def test_environment_is_not_persisted_but_pagers_are_off(ctx):
    bash.run({"command": "export FOO=bar"}, ctx)
    assert bash.run({"command": 'echo "[$FOO] $GIT_PAGER"'}, ctx).output == "[] cat"


def test_timeout_kills_the_process_group_and_returns_partial_output(ctx, workspace):
    result = bash.run({"command": "echo begun; sleep 60 & echo $! > kid.pid; sleep 60", "timeout": 1}, ctx)
    assert not result.ok and result.data["timed_out"] and result.data["exit_code"] is None
    assert result.output.startswith("begun\n") and "timed out after 1s" in result.output
    assert _dies(ctx, int((workspace / "kid.pid").read_text()))


def test_output_is_capped_head_and_tail_with_elided_count(ctx):
    result = bash.run({"command": "seq 1 100000"}, ctx)
    assert result.ok
    assert result.output.startswith("1\n2\n3\n") and result.output.endswith("99999\n100000")
    elided = result.data["elided_bytes"]
    assert elided > 0 and f"[... {elided} bytes elided ...]" in result.output
    assert len(result.output.encode()) < OUTPUT_LIMIT + 200


def test_background_job_reports_new_output_and_exit_status(ctx, workspace):
    started = bash.run(
        {"command": "echo one; while [ ! -f go ]; do sleep 0.05; done; echo two; exit 3", "background": True},
        ctx,
    )
    assert started.ok
    job = started.data["job_id"]
    first, status = _poll_job(ctx, job, lambda out, st: "one" in out)
    assert first == "one\n" and status == "running"
    (workspace / "go").touch()
    rest, status = _poll_job(ctx, job, lambda out, st: st != "running")
    assert rest == "two\n" and status == "exited with code 3"
    again = bash_output.run({"id": job}, ctx)
    assert again.output == f"[{job}: exited with code 3]\n(no new output)"


def test_background_job_runs_in_the_current_directory(ctx, workspace):
    bash.run({"command": "mkdir -p jobs && cd jobs"}, ctx)
    job = bash.run({"command": "pwd", "background": True}, ctx).data["job_id"]
    output, _ = _poll_job(ctx, job, lambda out, st: st != "running")
    assert output == f"{workspace / 'jobs'}\n"


def test_bash_kill_stops_the_whole_group(ctx, workspace):
    job = bash.run({"command": "sleep 300 & echo $! > inner.pid; sleep 300", "background": True}, ctx).data[
        "job_id"
    ]
    pid_file = workspace / "inner.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = bash_kill.run({"id": job}, ctx)
    assert killed.ok and killed.data["status"] == "killed"
    assert _dies(ctx, int(pid_file.read_text()))
    assert bash_output.run({"id": job}, ctx).data["status"] == "killed"


def test_unknown_job_ids_are_reported(ctx):
    result = bash_output.run({"id": "job9"}, ctx)
    assert not result.ok and "no background job 'job9'" in result.output
    assert not bash_kill.run({"id": "job9"}, ctx).ok


def test_the_firewall_screens_foreground_and_background_commands(ctx, home):
    (home / "keep.txt").write_text("precious")
    for background in (False, True):
        result = bash.run({"command": "rm -rf ~/keep.txt", "background": background}, ctx)
        assert not result.ok and result.data["refused"] and "Refused by the safety firewall" in result.output
    assert (home / "keep.txt").read_text() == "precious"


def test_kill_all_jobs_ends_every_job_of_the_session(ctx):
    ids = [bash.run({"command": "sleep 300", "background": True}, ctx).data["job_id"] for _ in range(2)]
    kill_all_jobs(ctx)
    assert [bash_output.run({"id": i}, ctx).data["status"] for i in ids] == ["killed", "killed"]


def test_odd_command_endings_do_not_break_the_cwd_capture(ctx, workspace):
    bash.run({"command": "mkdir -p d && cd d"}, ctx)
    result = bash.run({"command": "cat <<EOF\nunterminated heredoc"}, ctx)
    assert "__mmx" not in result.output
    assert bash.run({"command": "echo trailing \\"}, ctx).output == "trailing \\"
    assert bash.run({"command": "pwd"}, ctx).output == str(workspace / "d")
    syntax = bash.run({"command": "if then fi"}, ctx)
    assert not syntax.ok and "syntax error" in syntax.output
