"""Settings, from four layers. Later layers win:

1. the user's file: $XDG_CONFIG_HOME/mmx-agent/config.toml (default ~/.config/mmx-agent/config.toml);
2. the project's file: .mmx-agent.toml in the working directory or the nearest parent that has one;
3. environment variables: MMX_AGENT_<SETTING> (e.g. MMX_AGENT_MODEL, MMX_AGENT_MAX_TURNS);
4. command-line flags.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

PROJECT_FILE = ".mmx-agent.toml"
# The agent can write the project's file (it is in the workspace): from there a run may choose how
# its commands are confined, never that they are not, nor give them the network back.
NOT_FROM_PROJECT_FILE = {"sandbox": "local", "confinement": "none", "network": "host"}


class ConfigError(ValueError):
    pass


HookEvent = Literal["session_start", "user_prompt_submit", "pre_tool_use", "post_tool_use", "stop"]


class HookSpec(BaseModel):
    """One `[[hooks.EVENT]]` entry: a shell command run (confined) when EVENT happens."""

    model_config = ConfigDict(extra="forbid")

    command: str
    matcher: str = "*"  # tool-name glob (pre/post_tool_use); `a|b` matches either
    timeout: float = 60.0

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be above 0")
        return value


class McpServerSettings(BaseModel):
    """One `[mcp_servers.NAME]` table: a local server (`command`, over stdio) or a remote one (`url`,
    streamable HTTP). Header values may name environment variables as `${VAR}`."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None  # relative to the workspace; default the workspace
    url: str | None = None
    headers: dict[str, str] = {}
    startup_timeout: float = 30.0  # seconds for the server to start and list its tools
    tool_timeout: float = 120.0  # seconds for one tool call

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs either command (stdio) or url (streamable HTTP)")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal[
        "minimax", "openai-compatible", "anthropic-compatible", "completions", "local", "replay"
    ] = "minimax"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    replay: str | None = None  # the file for --backend replay
    local_compile: bool = False  # --backend local: build the compiled decode step first (slow start)
    permission_mode: Literal["ask", "auto-edit", "full-auto", "plan"] | None = (
        None  # None: per run kind, below
    )
    interactive_permission_mode: Literal["ask", "auto-edit", "full-auto", "plan"] = "ask"
    ci_permission_mode: Literal["ask", "auto-edit", "full-auto", "plan"] = "auto-edit"
    allow: list[str] = []
    deny: list[str] = []
    # confined: this host, commands under bwrap or Landlock (sandbox/confinement/); local: this host,
    # unconfined; docker: a container.
    sandbox: Literal["confined", "local", "docker"] = "confined"
    confinement: Literal["auto", "bwrap", "landlock", "none"] = "auto"  # for sandbox = confined
    network: Literal["host", "none"] | None = None  # None: host (confined, local); docker has none
    docker_image: str | None = None
    docker_mode: Literal["copy", "bind"] = "copy"
    # The Docker sandbox's limits; 0 or less is refused (Docker would read 0 as "no limit").
    docker_memory: str = "2g"
    docker_cpus: float = 2.0
    docker_pids: int = 512
    docker_disk: str = "2g"  # the workspace (copy mode) and /tmp are tmpfs mounts of this size
    max_turns: int = 50
    max_tokens: int | None = None
    max_cost: float | None = None
    max_wall_seconds: float | None = None
    context_window: int | None = None  # overrides what the backend reports
    tokenizer: str | None = (
        None  # remote backends: tokenizer.json (or its directory) to count prompts exactly
    )
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None
    test_commands: list[str] | None = None
    # -p runs: our own run of the project's tests at the end (agent/planner/verification.py).
    verify_command: str | None = None  # None: detected from the repository
    verify_timeout: float = 600.0
    verify_retries: int = 0  # failed verifications sent back to the model before the run ends
    require_verified: bool = False  # a failed or missing verification ends the run `unverified` (exit 6)
    reasoning_display: Literal["full", "collapsed", "hidden"] = "collapsed"
    prices: dict[str, dict[str, float]] = {}
    # Private or local hosts and addresses web_fetch may reach; not taken from the project's file.
    web_fetch_allow_hosts: list[str] = []
    hooks: dict[HookEvent, list[HookSpec]] = {}  # agent/planner/hooks.py; every layer's hooks run

    mcp_servers: dict[str, McpServerSettings] = {}

    @field_validator("docker_memory", "docker_disk")
    @classmethod
    def _docker_size(cls, value: str) -> str:
        from sandbox.docker import parse_size

        parse_size(value)  # ValueError: pydantic reports it with the setting's name
        return value

    @field_validator("verify_timeout")
    @classmethod
    def _above_zero(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be above 0")
        return value

    @field_validator("verify_retries")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 or more")
        return value

    @field_validator("docker_cpus", "docker_pids")
    @classmethod
    def _docker_count(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be above 0")
        return value

    @model_validator(mode="after")
    def _network_fits_sandbox(self) -> Settings:
        if self.network == "none" and self.sandbox == "local":
            raise ValueError("network none needs sandbox confined or docker (local runs commands unconfined)")
        if self.network == "host" and self.sandbox == "docker":
            raise ValueError(
                "network host is not available with sandbox docker (its containers have no network)"
            )
        return self


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mmx-agent"


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/mmx-agent (default ~/.cache/mmx-agent): what can be rebuilt, kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmx-agent"


def find_project_file(cwd: Path) -> Path | None:
    for directory in [cwd, *cwd.parents]:
        candidate = directory / PROJECT_FILE
        if candidate.exists():  # a directory of that name is an error (_read_toml), not skipped
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a config file")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        raw = environ.get("MMX_AGENT_" + name.upper())
        if raw is None:
            continue
        if field.annotation in (str, str | None) or name in ("backend", "sandbox", "confinement", "network"):
            values[name] = raw
        else:
            try:
                values[name] = json.loads(raw)  # numbers, lists and objects as JSON
            except json.JSONDecodeError:
                values[name] = raw  # let validation say what is wrong
    return values


def _describe_problem(error: dict[str, Any]) -> str:
    where = ".".join(map(str, error["loc"]))
    if not where:  # a rule across settings (network and sandbox): its message says it all
        return error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    got = f" (got {given!r})" if isinstance(given, str | int | float | bool) else ""
    return f"{where}: {error['msg']}{got}"


def _keeping_earlier_hooks(merged: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Hooks add up across layers: a later file (the project's, which the agent can write) adds
    hooks but cannot drop the user's."""
    earlier, later = merged.get("hooks"), values.get("hooks")
    if not isinstance(earlier, dict) or not isinstance(later, dict):
        return values
    combined = dict(earlier)
    for event, entries in later.items():
        before = combined.get(event, [])
        if isinstance(before, list) and isinstance(entries, list):
            combined[event] = [*before, *entries]
        else:
            combined[event] = entries  # let validation say what is wrong
    return {**values, "hooks": combined}


def load_settings(
    cwd: Path, flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    layers: list[tuple[str, dict[str, Any]]] = []
    user_file = user_config_dir() / "config.toml"
    if user_file.exists():
        layers.append((str(user_file), _read_toml(user_file)))
    project_file = find_project_file(cwd)
    if project_file is not None:
        project = _read_toml(project_file)
        for key, unconfined in NOT_FROM_PROJECT_FILE.items():
            if project.get(key) == unconfined:
                raise ConfigError(
                    f"{project_file}: {key} = {unconfined!r} is not taken from a project file, which the "
                    f"agent itself can write; set it in {user_file}, MMX_AGENT_{key.upper()} or a flag"
                )
        if "web_fetch_allow_hosts" in project:
            raise ConfigError(
                f"{project_file}: web_fetch_allow_hosts is not taken from a project file, which the agent "
                f"itself can write; set it in {user_file} or MMX_AGENT_WEB_FETCH_ALLOW_HOSTS"
            )
        layers.append((str(project_file), project))
    layers.append(("environment", _from_environment(dict(os.environ if environ is None else environ))))
    layers.append(("flags", {k: v for k, v in (flags or {}).items() if v is not None and v != []}))
    merged: dict[str, Any] = {}
    for source, values in layers:
        values = _keeping_earlier_hooks(merged, values)
        try:
            Settings.model_validate({**merged, **values})
        except ValidationError as exc:
            problems = "; ".join(_describe_problem(e) for e in exc.errors())
            raise ConfigError(f"invalid settings from {source}: {problems}") from None
        # Servers are merged by name: a project's file adds to the user's servers.
        servers = {**merged.get("mcp_servers", {}), **values.get("mcp_servers", {})}
        merged.update(values)
        if servers:
            merged["mcp_servers"] = servers
    return Settings.model_validate(merged)
