"""Running git so that nothing the model can write makes it run a program.

git runs programs that its configuration names: `core.fsmonitor` on every status, hooks,
filter and textconv drivers that `.gitattributes` picks, gpg on a plain `git log` once
`log.showSignature` is set, pagers, editors, credential helpers, ssh. The model can write the
repository's `.git/config` and, unconfined, `~/.gitconfig` and any file they include. So every
git command the project runs on the user's repository (git tools, firewall probes) gets its
environment from `guarded_git_env` (the checkpoint store owns its config and needs only
`base_env`, see checkpoint_store.py):

- GIT_CONFIG_NOSYSTEM=1 and GIT_CONFIG_GLOBAL=/dev/null: no system config, and an empty global
  one. Only CARRIED_KEYS (identity, excludes file, safe.directory) come over from the user's
  real global or system config, and only where the repository does not set them itself.
- GIT_CONFIG_COUNT/KEY_n/VALUE_n overrides. They rank above every config file, like `git -c`,
  and keep key and value apart, so a driver named `x=y` cannot split the override. They set
  ALWAYS, and a harmless value for every key of the effective configuration (includes followed)
  that names a program (NAMED_PROGRAM_KEYS), read first with `git config --list`, which runs
  nothing. Each value was checked to stop the program; an empty filter or diff command makes git
  skip the filter or fail without running anything.
- `submodule.<name>.ignore=dirty` for every submodule: otherwise `git status` runs a `git
  status` inside each submodule, which reads that repository's own config (drivers under names
  we never saw).

Keys that git reads first-wins cannot be overridden: `core.gitProxy` gives way to the
GIT_PROXY_COMMAND environment variable, `remote.<name>.uploadpack` and `receivepack` to
`protocol.allow=never`, which stops every transport (our commands never fetch or push). trace2
targets (files named in system or global config) are off through GIT_TRACE2*=0, even while we
read those configs. `git_argv` adds `--no-pager` and, for diff, show and log,
`--no-ext-diff --no-textconv`, so the empty diff commands are never even consulted.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from sandbox.base import Sandbox

# Config that names a program (or makes git run one), set to a value that runs nothing.
ALWAYS = {
    "core.fsmonitor": "false",
    "core.hooksPath": "/dev/null",
    "core.pager": "cat",
    "core.editor": ":",
    "sequence.editor": ":",
    "core.askPass": "",
    "core.sshCommand": "false",
    "credential.helper": "",  # the empty value empties the list of helpers configured before it
    "diff.external": "",
    "gpg.program": "",
    "gpg.openpgp.program": "",
    "gpg.x509.program": "",
    "gpg.ssh.program": "",
    "gpg.ssh.defaultKeyCommand": "",
    "commit.gpgSign": "false",
    "tag.gpgSign": "false",
    "tag.forceSignAnnotated": "false",
    "log.showSignature": "false",
    "merge.verifySignatures": "false",
    "protocol.allow": "never",
    "submodule.recurse": "false",
    "diff.ignoreSubmodules": "dirty",
    "diff.submodule": "short",
    "status.submoduleSummary": "false",
    "gc.auto": "0",  # no detached `git gc` left running after a commit
    "maintenance.auto": "false",
}
# (section, key) of config with a subsection (`filter.<driver>.clean`) that names a program.
NAMED_PROGRAM_KEYS = {
    ("filter", "clean"): "",
    ("filter", "smudge"): "",
    ("filter", "process"): "",
    ("diff", "textconv"): "",
    ("diff", "command"): "",
    ("merge", "driver"): "",
    ("credential", "helper"): "",
    ("trailer", "cmd"): "",
    ("trailer", "command"): "",
}
# Sections whose every key (`pager.<command>`, `alias.<name>`) may name a program. No command of
# ours is an alias (git never lets one shadow a built-in), but an empty alias runs nothing.
PROGRAM_SECTIONS = {"pager": "false", "alias": ""}
# What the controlled global config keeps of the user's real one.
CARRIED_KEYS = ("user.name", "user.email", "user.useconfigonly", "core.excludesfile", "safe.directory")
REPOSITORY_SCOPES = ("local", "worktree", "command")

BASE_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_PAGER": "cat",
    "GIT_EDITOR": ":",
    "GIT_SEQUENCE_EDITOR": ":",
    "GIT_ASKPASS": "",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PROXY_COMMAND": "",  # core.gitProxy is first-wins; this environment variable beats it
    "GIT_EXTERNAL_DIFF": "",
    # trace2 targets are files named in system or global config; these beat them, even while we
    # read those configs
    "GIT_TRACE2": "0",
    "GIT_TRACE2_EVENT": "0",
    "GIT_TRACE2_PERF": "0",
}
DIFF_COMMANDS = {"diff", "show", "log"}
DIFF_SAFETY = ["--no-ext-diff", "--no-textconv"]
_SECTION_MARK = "mmx-gitmodules"
READ_TIMEOUT_SECONDS = 60


class GitConfigError(Exception):
    """git's configuration could not be read, so no git command may run."""

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code  # 128: git itself refused (not a directory, a config it cannot parse)


@dataclass(frozen=True)
class ConfigEntry:
    scope: str  # system, global, local, worktree, command
    key: str  # as git lists it: section and name in lower case, the subsection verbatim
    value: str | None  # None for a bare boolean key (`[core] bare`)


def git_argv(args: list[str], options: list[str] | None = None) -> list[str]:
    """`git --no-pager [options] SUBCOMMAND ...`, with external diff and textconv off for diffs."""
    subcommand, rest = args[0], args[1:]
    safety = DIFF_SAFETY if subcommand in DIFF_COMMANDS else []
    return ["git", "--no-pager", *(options or []), subcommand, *safety, *rest]


def base_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that needs no reading: no system or global config, ALWAYS set."""
    return {**BASE_ENV, **overrides_env([*ALWAYS.items(), *(overrides or {}).items()])}


def guarded_git_env(sandbox: Sandbox, cwd: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for git commands run in `cwd`: base_env plus an override for every key of
    the effective configuration that names a program. `overrides` are the caller's own settings."""
    entries, submodules = read_config(sandbox, cwd)
    pairs = [*ALWAYS.items(), *program_overrides(entries, submodules), *carried_settings(entries)]
    return {**BASE_ENV, **overrides_env([*pairs, *(overrides or {}).items()])}


def read_config(sandbox: Sandbox, cwd: str) -> tuple[list[ConfigEntry], set[str]]:
    """Every config entry git would see in `cwd` (all scopes, includes followed), and the names
    of the submodules its .gitmodules (work tree, index or HEAD) declare. Runs no program."""
    git = f"git --no-pager -C {shlex.quote(cwd)}"
    modules = "config --null --list --blob"
    script = (
        f"{git} config --null --list --includes --show-scope || exit $?\n"
        f"printf '\\0{_SECTION_MARK}\\0'\n"
        f'if top=$({git} rev-parse --show-toplevel 2>/dev/null) && [ -f "$top/.gitmodules" ]; then\n'
        f'  {git} config --null --list --file "$top/.gitmodules" 2>/dev/null\n'
        "fi\n"
        f"{git} {modules} :.gitmodules 2>/dev/null; {git} {modules} HEAD:.gitmodules 2>/dev/null\n"
        "exit 0\n"
    )
    # ALWAYS applies (looking up `:.gitmodules` reads the index, which asks core.fsmonitor). The
    # user's real global and system config are read too: CARRIED_KEYS come from them.
    env = {**base_env(), "GIT_OPTIONAL_LOCKS": "0"}
    for name in ("GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL"):
        env.pop(name)
    result = sandbox.exec(script, timeout=READ_TIMEOUT_SECONDS, env=env, confined=False)
    if result.timed_out:
        raise GitConfigError(f"reading git's configuration timed out after {READ_TIMEOUT_SECONDS}s")
    listing, mark, modules_listing = result.output.partition(f"\0{_SECTION_MARK}\0")
    if result.exit_code == 127:
        raise GitConfigError("git is not installed in the sandbox", 127)
    if result.exit_code != 0 or not mark:
        problem = listing.strip() or f"git config failed with exit code {result.exit_code}"
        raise GitConfigError(
            f"git's configuration cannot be read, so no git command runs: {problem}", result.exit_code
        )
    return parse_scoped_listing(listing), submodule_names(modules_listing)


def parse_scoped_listing(listing: str) -> list[ConfigEntry]:
    """`git config --null --list --show-scope`: "scope\\0key\\nvalue\\0" (no \\nvalue: a bare key)."""
    fields = listing.split("\0")
    entries = []
    for scope, item in zip(fields[0::2], fields[1::2], strict=False):
        key, newline, value = item.partition("\n")
        if key:
            entries.append(ConfigEntry(scope, key, value if newline else None))
    return entries


def submodule_names(listing: str) -> set[str]:
    names = set()
    for item in listing.split("\0"):
        key = item.partition("\n")[0]
        section, _, rest = key.partition(".")
        if section == "submodule" and "." in rest:
            names.add(rest.rpartition(".")[0])
    return names


def program_overrides(entries: list[ConfigEntry], submodules: set[str]) -> list[tuple[str, str]]:
    """A harmless value for each entry that names a program, and `ignore=dirty` per submodule."""
    found: dict[str, str] = {}
    for entry in entries:
        section, _, rest = entry.key.partition(".")
        subsection, _, name = rest.rpartition(".")
        if subsection and (section, name) in NAMED_PROGRAM_KEYS:
            found[entry.key] = NAMED_PROGRAM_KEYS[(section, name)]
        elif section in PROGRAM_SECTIONS and not subsection:
            found[entry.key] = PROGRAM_SECTIONS[section]
    return [*found.items(), *((f"submodule.{name}.ignore", "dirty") for name in sorted(submodules))]


def filter_drivers(entries: list[ConfigEntry]) -> set[str]:
    """Content filters (`filter.<name>.clean/smudge/process`) the config defines."""
    drivers = set()
    for entry in entries:
        section, _, rest = entry.key.partition(".")
        name, _, key = rest.rpartition(".")
        if section == "filter" and name and key in ("clean", "smudge", "process"):
            drivers.add(name)
    return drivers


def carried_settings(entries: list[ConfigEntry]) -> list[tuple[str, str]]:
    """CARRIED_KEYS from the user's global and system config that the repository leaves unset."""
    set_by_repository = {e.key for e in entries if e.scope in REPOSITORY_SCOPES}
    return [
        (e.key, e.value)
        for e in entries
        if e.scope in ("system", "global")
        and e.key in CARRIED_KEYS
        and e.key not in set_by_repository
        and e.value is not None
    ]


def overrides_env(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """GIT_CONFIG_COUNT, GIT_CONFIG_KEY_n and GIT_CONFIG_VALUE_n for `pairs`, in order."""
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env
