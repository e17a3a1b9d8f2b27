"""web_fetch in a replayed `-p` run: refused without full-auto or a rule; with the user's config
opening 127.0.0.1 and --allow, a local page reaches the model as Markdown."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.agent.helpers import make_buggy_repo, raw_completion, run_cli, write_replay


class Docs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<html><body><h2>Install</h2><p>Run <code>pip install calc</code>.</p></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def docs_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Docs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/install"
    server.shutdown()
    server.server_close()


def run_fetch(tmp_path: Path, url: str, *flags: str) -> list[dict]:
    repo = make_buggy_repo(tmp_path)
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [raw_completion("read the docs", "", [("web_fetch", {"url": url})]), raw_completion("done", "Read.")],
    )
    result = run_cli(
        "-p", "how to install?", "--backend", "replay", "--replay", str(replay), "--output-format", "stream-json",
        *flags, cwd=repo,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def tool_result(events: list[dict]) -> dict:
    return next(e for e in events if e["type"] == "tool_result")


def test_web_fetch_is_refused_in_p_without_full_auto_or_a_rule(tmp_path, isolated_home, docs_url):
    result = tool_result(run_fetch(tmp_path, docs_url))
    assert not result["ok"] and "not permitted in permission mode 'auto-edit'" in result["output"]


def test_a_local_page_reaches_the_model_when_config_and_a_rule_allow_it(tmp_path, isolated_home, docs_url):
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "mmx-agent"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('web_fetch_allow_hosts = ["127.0.0.1"]\n')
    result = tool_result(run_fetch(tmp_path, docs_url, "--allow", "web_fetch(http://127.0.0.1:*)"))
    assert result["ok"], result
    assert "## Install" in result["output"] and "Run `pip install calc`." in result["output"]


def test_without_the_config_the_local_page_is_refused_even_in_full_auto(tmp_path, isolated_home, docs_url):
    result = tool_result(run_fetch(tmp_path, docs_url, "--permission-mode", "full-auto"))
    assert not result["ok"] and "private or local address" in result["output"]
