"""web_fetch: one web page, as Markdown.

The agent fetches it itself (not through the sandbox), so the tool guards what a shell command's
confinement would: only http and https; by default no private, loopback, link-local or other
non-global address (every address the host resolves to is checked, the connection goes to the
checked address, so DNS cannot answer differently in between, and each redirect is checked the
same way); `web_fetch_allow_hosts` in the config opens named hosts or addresses. A URL that carries
a secret the session knows (the redactor would change it) is never sent.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any
from urllib.parse import unquote

import httpx
from bs4 import BeautifulSoup
from markdownify import markdownify

from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult

MAX_DOWNLOAD_BYTES = 2_000_000
MAX_OUTPUT_CHARS = 60_000
MAX_REDIRECTS = 5
TIMEOUT_SECONDS = 20.0  # connecting, and each read
TOTAL_SECONDS = 60.0  # the whole download: a server that trickles bytes is cut off
_REDIRECTS = {301, 302, 303, 307, 308}
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")
_NOT_CONTENT = ("head", "script", "style", "noscript", "iframe", "svg", "template")


class FetchRefused(Exception):
    """Why a URL is not fetched, worded for the model."""


class WebFetchTool(ToolBase):
    name = "web_fetch"
    description = (
        "Fetch a web page (http or https) and return it as Markdown (other text as it is). For "
        "documentation, issues and references; it asks the user first in every permission mode but "
        "full-auto. Private and local addresses are refused unless the user's config allows them."
    )
    parameters = {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "The http:// or https:// URL."}},
        "required": ["url"],
        "additionalProperties": False,
    }
    permission = Permission.NETWORK

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        url = args["url"].strip()
        try:
            final_url, content_type, body, cut = fetch(url, ctx)
        except FetchRefused as exc:
            return ToolResult(False, f"web_fetch refused {url}: {exc}", {"error": "refused"})
        except httpx.HTTPError as exc:
            return ToolResult(
                False,
                f"web_fetch could not fetch {url}: {type(exc).__name__}: {exc}",
                {"error": "fetch_failed"},
            )
        text = to_markdown(body) if "html" in content_type else body
        if len(text) > MAX_OUTPUT_CHARS:
            text = (
                text[:MAX_OUTPUT_CHARS]
                + f"\n[output truncated: {len(text) - MAX_OUTPUT_CHARS} more characters]"
            )
        elif cut:
            text += f"\n[output truncated: only the first {MAX_DOWNLOAD_BYTES} bytes, or what came in {TOTAL_SECONDS:.0f} s]"
        return ToolResult(True, text, {"url": final_url, "content_type": content_type})


def fetch(url: str, ctx: ToolContext) -> tuple[str, str, str, bool]:
    """The final URL, its content type, the text and whether it was cut at MAX_DOWNLOAD_BYTES."""
    allowed = set(ctx.web_fetch_allow_hosts)
    with httpx.Client(follow_redirects=False, timeout=TIMEOUT_SECONDS, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            request = _pinned_request(client, url, allowed, ctx)
            response = client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    url = str(httpx.URL(url).join(location))
                    continue
                if response.status_code >= 400:
                    raise FetchRefused(f"the server answered HTTP {response.status_code}")
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type and not content_type.startswith(_TEXT_TYPES):
                    raise FetchRefused(f"it is {content_type}, not a page or text")
                raw, cut = _read_capped(response)
                text = raw.decode(response.encoding or "utf-8", errors="replace")
                return url, content_type or "text/plain", text, cut
            finally:
                response.close()
    raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")


def _pinned_request(client: httpx.Client, url: str, allowed: set[str], ctx: ToolContext) -> httpx.Request:
    """A request to the URL's host that connects to an address checked here."""
    redactor = ctx.redactor
    if redactor.redact(url) != url or redactor.redact(unquote(url)) != unquote(url):
        raise FetchRefused("the URL contains a secret (a credential this session knows); it is not sent")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchRefused(f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchRefused("only http:// and https:// URLs are fetched")
    if not parsed.host:
        raise FetchRefused("the URL has no host")
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    address = _checked_address(host, port, allowed)
    pinned = parsed.copy_with(host=address)
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return client.build_request(
        "GET", pinned, headers={"Host": parsed.netloc.decode("ascii")}, extensions=extensions
    )


def _checked_address(host: str, port: int, allowed: set[str]) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"cannot resolve {host} ({exc})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise FetchRefused(f"{host} has no address")
    if host not in allowed:
        for address in addresses:
            if address not in allowed and not _is_public(address):
                raise FetchRefused(
                    f"{host} resolves to {address}, a private or local address; the user can allow it "
                    f'with web_fetch_allow_hosts = ["{host}"] in ~/.config/mmx-agent/config.toml'
                )
    return addresses[0]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])  # an IPv6 zone (fe80::1%eth0) is link-local
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    chunks, size, deadline = [], 0, time.monotonic() + TOTAL_SECONDS
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_DOWNLOAD_BYTES or time.monotonic() > deadline:
            return b"".join(chunks)[:MAX_DOWNLOAD_BYTES], True
    return b"".join(chunks), False


def to_markdown(html: str) -> str:
    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(list(_NOT_CONTENT)):
        tag.decompose()
    text = markdownify(str(soup), heading_style="ATX").strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return f"Title: {title}\n\n{text}" if title else text


TOOLS = [WebFetchTool()]
