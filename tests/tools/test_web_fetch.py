"""web_fetch against a local http.server: pages come back as Markdown; private and local addresses,
redirects to them, other schemes, oversized pages and URLs carrying secrets are refused."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.config import ConfigError, load_settings
from agent.permissions import PermissionPolicy, Rule
from agent.secrets import Redactor
from agent.session_setup import session_tools
from agent.tools import web_fetch
from agent.tools.base import Permission, ToolContext
from agent.tools.registry import get_tool, run_tool

SECRET = "sk-live-9f8e7d6c5b4a39281706"
PAGE = """<html><head><title>Release notes</title><style>body { color: red }</style>
<script>document.write("tracking")</script></head>
<body><h1>Version 2</h1><p>The <a href="/api">API</a> is <b>stable</b>.</p>
<ul><li>faster</li><li>smaller</li></ul></body></html>"""


class Site(BaseHTTPRequestHandler):
    paths: list[str] = []
    redirect_to = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Site.paths.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", Site.redirect_to)
            self.end_headers()
            return
        if self.path == "/big":
            body, kind = b"x" * (web_fetch.MAX_DOWNLOAD_BYTES + 500_000), "text/plain"
        elif self.path == "/image":
            body, kind = b"\x89PNG\r\n", "image/png"
        else:
            body, kind = PAGE.encode(), "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site():
    Site.paths = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def context(*allow: str) -> ToolContext:
    sandbox = SimpleNamespace(env={}, root="/nonexistent")
    return ToolContext(sandbox, session_redactor=Redactor({SECRET: "API_TOKEN"}), web_fetch_allow_hosts=allow)


def fetch(url: str, ctx: ToolContext):
    return run_tool("web_fetch", {"url": url}, ctx)


def test_a_local_page_comes_back_as_markdown_when_the_config_allows_its_host(site):
    result = fetch(site + "/notes", context("127.0.0.1"))
    assert result.ok, result.output
    assert result.output.startswith("Title: Release notes")
    assert "# Version 2" in result.output
    assert "The [API](/api) is **stable**." in result.output
    assert "* faster" in result.output or "- faster" in result.output
    assert "tracking" not in result.output and "color: red" not in result.output
    assert result.data["url"] == site + "/notes"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",
        "http://[::1]:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0:{port}/",
    ],
)
def test_private_and_local_addresses_are_refused_by_default(site, url):
    port = site.rsplit(":", 1)[1]
    result = fetch(url.format(port=port), context())
    assert not result.ok
    assert result.data["error"] == "refused"
    assert "private or local address" in result.output
    assert "web_fetch_allow_hosts" in result.output
    assert Site.paths == []  # nothing was sent


def test_a_redirect_to_a_private_address_is_refused(site):
    port = site.rsplit(":", 1)[1]
    Site.redirect_to = f"http://127.0.0.2:{port}/secret-admin"
    result = fetch(site + "/redirect", context("127.0.0.1"))
    assert not result.ok
    assert "127.0.0.2" in result.output and "private or local address" in result.output
    assert Site.paths == ["/redirect"]


def test_a_redirect_to_another_scheme_is_refused_and_an_allowed_one_is_followed(site):
    Site.redirect_to = "file:///etc/passwd"
    refused = fetch(site + "/redirect", context("127.0.0.1"))
    assert not refused.ok and "only http:// and https://" in refused.output
    Site.redirect_to = "/after"
    followed = fetch(site + "/redirect", context("127.0.0.1"))
    assert followed.ok and "# Version 2" in followed.output
    assert followed.data["url"] == site + "/after"


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com", "example.com"]
)
def test_other_schemes_are_refused(url):
    result = fetch(url, context())
    assert not result.ok and result.data["error"] == "refused"


def test_the_download_is_capped(site):
    result = fetch(site + "/big", context("127.0.0.1"))
    assert result.ok
    assert len(result.output) < web_fetch.MAX_OUTPUT_CHARS + 200
    assert "[output truncated:" in result.output


def test_binary_content_is_refused(site):
    result = fetch(site + "/image", context("127.0.0.1"))
    assert not result.ok and "image/png" in result.output


@pytest.mark.parametrize("query", [f"?key={SECRET}", f"?key={SECRET[:7]}%2D{SECRET[8:]}", f"/{SECRET}/x"])
def test_a_url_carrying_a_secret_is_never_sent(site, query):
    result = fetch(site + query, context("127.0.0.1"))
    assert not result.ok
    assert "contains a secret" in result.output
    assert SECRET not in result.output  # the refusal quotes the URL redacted
    assert Site.paths == []


def test_a_redirect_to_a_url_carrying_a_secret_is_not_followed(site):
    Site.redirect_to = f"/collect?token={SECRET}"
    result = fetch(site + "/redirect", context("127.0.0.1"))
    assert not result.ok and "contains a secret" in result.output
    assert Site.paths == ["/redirect"]


def test_web_fetch_asks_in_every_mode_but_full_auto():
    tool = get_tool("web_fetch")
    assert tool.permission == Permission.NETWORK and not tool.parallel_safe
    args = {"url": "https://docs.python.org/3/"}
    for mode in ("ask", "auto-edit", "plan"):
        assert not PermissionPolicy(mode).decide("web_fetch", tool.permission, args).allowed
        asked = []
        policy = PermissionPolicy(mode, ask=lambda name, a, asked=asked: asked.append(name) or True)
        assert policy.decide("web_fetch", tool.permission, args).allowed is (mode != "plan")
        assert asked == ([] if mode == "plan" else ["web_fetch"])
    assert PermissionPolicy("full-auto").decide("web_fetch", tool.permission, args).allowed
    rule = [Rule.parse("web_fetch(https://docs.python.org/*)")]
    assert PermissionPolicy("auto-edit", rule).decide("web_fetch", tool.permission, args).allowed
    other = {"url": "https://example.com/"}
    assert not PermissionPolicy("auto-edit", rule).decide("web_fetch", tool.permission, other).allowed


def test_allowed_hosts_come_from_the_users_config_never_the_projects(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "config" / "mmx-agent").mkdir(parents=True)
    (tmp_path / "config" / "mmx-agent" / "config.toml").write_text('web_fetch_allow_hosts = ["127.0.0.1"]\n')
    project = tmp_path / "project"
    project.mkdir()
    assert load_settings(project, environ={}).web_fetch_allow_hosts == ["127.0.0.1"]
    (project / ".mmx-agent.toml").write_text('web_fetch_allow_hosts = ["10.0.0.1"]\n')
    with pytest.raises(ConfigError, match="web_fetch_allow_hosts is not taken from a project file"):
        load_settings(project, environ={})


def test_runs_without_a_network_do_not_offer_web_fetch(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    names = lambda **flags: {t.name for t in session_tools(load_settings(tmp_path, flags, environ={}))}  # noqa: E731
    assert "web_fetch" in names()
    assert "web_fetch" not in names(network="none")
    assert "web_fetch" not in names(sandbox="docker")
