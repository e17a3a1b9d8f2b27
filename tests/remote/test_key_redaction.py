"""The backend's own API key is redacted from everything the run writes, even when the variable
holding it (`--api-key-env MY_VAR`) does not look like a credential."""

import json
import os
import subprocess
import sys

from tests.remote.servers import Reply
from tests.secret_forms import leaks, leaks_in_files

SECRET = "mmxK3y\\\"Q'/+=%-Zp9-0123456789-tail"  # an HTTP header carries ASCII only


def test_a_key_under_any_variable_name_is_redacted(serve, tmp_path):
    server = serve(
        "minimax",
        [
            Reply(
                "Print the key.", "", [("bash", {"command": "printenv MY_VAR; printenv MY_VAR > key.txt"})]
            ),
            Reply("Show it.", f"It is {SECRET}, in pieces on the wire."),
        ],
    )
    workspace = tmp_path / "work"
    workspace.mkdir()
    state = tmp_path / "state"
    run = subprocess.run(
        [
            sys.executable, "-m", "agent", "-p", "show the key", "--backend", "minimax", "--base-url", server.url,
            "--api-key-env", "MY_VAR", "--permission-mode", "full-auto", "--output-format", "stream-json",
            "--cwd", str(workspace),
        ],
        env={**os.environ, "XDG_STATE_HOME": str(state), "XDG_CONFIG_HOME": str(tmp_path / "c"), "MY_VAR": SECRET},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (workspace / "key.txt").read_text().strip() == SECRET
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert "[REDACTED:MY_VAR]" in events[-1]["result"] and "[REDACTED:MY_VAR]" in events[-1]["diff"]
    assert leaks(run.stdout, SECRET) == [] and leaks(run.stderr, SECRET) == []
    assert leaks_in_files(state, SECRET) == {}
