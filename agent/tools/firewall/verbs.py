"""What one simple command (an argv) would destroy, as the firewall sees it.

`effects_of(argv)` peels wrappers (sudo, env, nice, timeout, xargs, ...), notices shell source
that will run (`sh -c STRING`, `eval`, `watch`), and for each destructive verb returns the
paths it would delete, overwrite, truncate, move over or recursively re-permission. Git's
work-discarding subcommands come back as GitActions (git_probe.py) for the firewall to
check against the repository's real state.
"""

from __future__ import annotations

import fnmatch
import posixpath
import shlex
from dataclasses import dataclass, field

from agent.tools.firewall.git_probe import GitAction, git_action
from agent.tools.firewall.paths import Effect, Target
from agent.tools.firewall.words import Found, Unknown, parse_options


@dataclass
class Effects:
    targets: list[Target] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)  # shell source this command will run
    git: list[GitAction] = field(default_factory=list)
    reads_script_from_stdin: bool = False  # a shell with no -c and no script file
    unknown_cwd: bool = False  # the command runs in a directory we cannot know (env -C $X)
    chdir: str | None = None  # env -C DIR / --chdir
    runs: list[list[str]] = field(default_factory=list)  # commands it starts: wrappers peeled, find -exec

    def extend(self, other: Effects) -> None:
        self.targets += other.targets
        self.scripts += other.scripts
        self.runs += other.runs
        self.git += other.git
        self.reads_script_from_stdin |= other.reads_script_from_stdin
        self.unknown_cwd |= other.unknown_cwd
        self.chdir = other.chdir or self.chdir


SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox-sh"}
# Verbs whose presence makes an unparseable command suspicious.
RISKY_VERBS = {
    "rm", "rmdir", "unlink", "mv", "cp", "dd", "truncate", "shred", "ln", "chmod", "chown", "chgrp",
    "find", "git", "tee", "sed", "perl", "rsync", "install", "mkfs", "wipefs", "xargs", "eval",
}  # fmt: skip


def command_name(word: str) -> str:
    """`/usr/bin/rm` and `\\rm` are still rm."""
    return posixpath.basename(word.lstrip("\\"))


def _targets(args: list[str], verb: str, effect: Effect) -> list[Target]:
    out = []
    for arg in args:
        if isinstance(arg, Found):
            out += [Target(start, verb, Effect.SUBTREE, arg.spares_git) for start in arg.starts]
        else:
            out.append(Target(arg, verb, effect))
    return out


# -- wrappers: commands that run another command ---------------------------------------------
# name -> (short options taking a value, long options taking a value)
_WRAPPERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sudo": ("ugChDprtUT", ("user", "group", "close-from", "host", "chdir", "prompt", "role", "type")),
    "doas": ("uC", ()),
    "nice": ("n", ("adjustment",)),
    "ionice": ("cnp", ("class", "classdata", "pid")),
    "nohup": ("", ()),
    "stdbuf": ("ioe", ("input", "output", "error")),
    "setsid": ("", ()),
    "exec": ("a", ()),
    "builtin": ("", ()),
    "unbuffer": ("", ()),
    "chronic": ("", ()),
    "time": ("fo", ("format", "output")),
    "strace": ("abeEIoOpPsSuX", ("output", "trace", "signal", "string-limit", "user", "env", "attach")),
    "ltrace": ("aAeEnopsSuxX", ("output", "library")),
}


def effects_of(argv: list[str], stdin_args: list[str] | None = None) -> Effects:
    """What running `argv` would destroy. `stdin_args`: the words xargs would read, if known."""
    effects = Effects()
    while argv:
        name = command_name(argv[0])
        args = argv[1:]
        if isinstance(argv[0], Unknown):
            return effects  # running an unknown command: nothing we can name (see docstring)
        if name in _WRAPPERS:
            value_short, value_long = _WRAPPERS[name]
            if name == "time":
                for output in parse_options(args, value_short, value_long).values.get("o", []):
                    effects.targets.append(Target(output, "overwrite", Effect.WRITE))
            argv = _after_options(args, value_short, value_long, numeric_flag=name == "nice")
        elif name == "command":
            argv = _after_options(args, "", ())
            if {"-v", "-V"} & set(args[: len(args) - len(argv)]):
                return effects  # only looks the command up
        elif name == "env":
            argv = _unwrap_env(args, effects)
        elif name == "timeout":
            argv = _after_options(args, "sk", ("signal", "kill-after"))[1:]  # then the duration
        elif name in ("chrt", "taskset"):
            argv = _after_options(args, "", ("cpu-list",))[1:]  # then a priority or a mask
        elif name == "busybox":
            argv = args
        elif name == "chroot":
            argv = _after_options(args, "", ("userspec", "groups"))[1:]  # then the new root
        elif name == "script":
            parsed_script = parse_options(args, "cEIOBTt", ("command", "echo", "log-in", "log-out", "timing"))
            effects.scripts += parsed_script.values.get("c", []) + parsed_script.values.get("command", [])
            return effects
        elif name == "flock":
            argv = _after_options(args, "wE", ("wait", "timeout", "conflict-exit-code"))[
                1:
            ]  # then the lock file
            if argv[:1] in (["-c"], ["--command"]):
                effects.scripts += argv[1:2]
                return effects
        elif name == "watch":
            rest = _after_options(args, "nq", ("interval", "equexit"))
            effects.scripts.append(" ".join(rest))
            return effects
        elif name == "xargs":
            argv = _unwrap_xargs(args, stdin_args)
            stdin_args = None
        elif name in SHELLS:
            effects.extend(_shell(args))
            return effects
        elif name == "su":
            parsed_su = parse_options(args, "cgGs", ("command", "group", "supp-group", "shell"))
            effects.scripts += parsed_su.values.get("c", []) + parsed_su.values.get("command", [])
            return effects
        elif name == "eval":
            effects.scripts.append(" ".join(args))
            return effects
        elif name == "trap":
            action = [a for a in args if a != "--"][:1]  # `trap 'CODE' EXIT` runs CODE later
            effects.scripts += [a for a in action if not a.startswith("-") and a != ""]
            return effects
        else:
            effects.extend(_verb_effects(name, args))
            return effects
        if argv:
            effects.runs.append(list(argv))  # the wrapped command runs too
    return effects


def _after_options(
    args: list[str], value_short: str, value_long: tuple[str, ...], numeric_flag: bool = False
) -> list[str]:
    """The argv that follows a wrapper's own options."""
    i = 0
    while i < len(args) and args[i].startswith("-") and not isinstance(args[i], Unknown):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if numeric_flag and arg[1:].isdigit():
            continue  # nice -10
        if arg.startswith("--"):
            if "=" not in arg and arg[2:] in value_long:
                i += 1
            continue
        for j, letter in enumerate(arg[1:], start=1):
            if letter in value_short:
                if j == len(arg) - 1:
                    i += 1  # the value is the next argument
                break
    return args[i:]


def _unwrap_env(args: list[str], effects: Effects) -> list[str]:
    i = 0
    while i < len(args):
        arg = args[i]
        if isinstance(arg, Unknown):
            break
        if arg in ("-u", "--unset"):
            i += 2
        elif arg in ("-C", "--chdir"):
            if i + 1 < len(args):
                _set_chdir(effects, args[i + 1])
            i += 2
        elif arg.startswith("--chdir="):
            _set_chdir(effects, arg.split("=", 1)[1])
            i += 1
        elif arg in ("-S", "--split-string") and i + 1 < len(args):
            return shlex.split(args[i + 1]) + args[i + 2 :]
        elif arg == "--":
            i += 1
            break
        elif arg.startswith("-") or ("=" in arg and not arg.startswith("=")):
            i += 1  # a flag, or NAME=value
        else:
            break
    return args[i:]


def _set_chdir(effects: Effects, directory: str) -> None:
    if isinstance(directory, Unknown):
        effects.unknown_cwd = True
    else:
        effects.chdir = directory


def _unwrap_xargs(args: list[str], stdin_args: list[str] | None) -> list[str]:
    parsed_argv: list[str] = []
    replace: str | None = None
    from_file = False
    i = 0
    value_short = "ILnPsdEa"
    while i < len(args) and args[i].startswith("-") and not isinstance(args[i], Unknown):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name == "arg-file":
                from_file = True
            if name == "replace":
                replace = value or "{}"
            if not eq and name in (
                "arg-file",
                "delimiter",
                "max-args",
                "max-lines",
                "max-procs",
                "max-chars",
                "eof",
            ):
                i += 1
            continue
        letter = arg[1]
        if letter == "i":
            replace = arg[2:] or "{}"
        elif letter in value_short:
            value = arg[2:]
            if not value and i < len(args):
                value = args[i]
                i += 1
            if letter == "I":
                replace = value
            if letter == "a":
                from_file = True
    command = args[i:] or ["echo"]
    supplied = [Unknown("<xargs input>")] if stdin_args is None or from_file else stdin_args
    if replace is None:
        return command + supplied
    for word in command:
        parsed_argv += supplied if replace in word and not isinstance(word, Unknown) else [word]
    return parsed_argv


def _shell(args: list[str]) -> Effects:
    effects = Effects()
    i = 0
    script_follows = False
    while i < len(args) and (args[i].startswith("-") or args[i].startswith("+")):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if arg in ("-o", "+o", "--rcfile", "--init-file"):
            i += 1
        elif not arg.startswith("--") and "c" in arg[1:]:
            script_follows = True
    operands = args[i:]
    if script_follows:
        if operands:
            effects.scripts.append(operands[0])
    elif not operands:
        effects.reads_script_from_stdin = True
    # else: runs a script file, which the firewall cannot read (documented)
    return effects


# -- destructive verbs ------------------------------------------------------------------------


def _verb_effects(name: str, args: list[str]) -> Effects:
    effects = Effects()
    if name in ("rm", "unlink", "rmdir"):
        effects.targets += _targets(parse_options(args).operands, "delete", Effect.REMOVE)
    elif name == "shred":
        operands = parse_options(args, "ns", ("iterations", "size", "random-source")).operands
        effects.targets += _targets(operands, "shred", Effect.WRITE)
    elif name == "truncate":
        operands = parse_options(args, "sr", ("size", "reference")).operands
        effects.targets += _targets(operands, "truncate", Effect.WRITE)
    elif name in ("mv", "cp", "install", "ln"):
        effects.targets += _copy_like(name, args)
    elif name == "dd":
        effects.targets += [Target(a[3:], "overwrite", Effect.WRITE) for a in args if a.startswith("of=")]
    elif name == "tee":
        parsed = parse_options(args, "", ("output-error",))
        if not parsed.flags & {"a", "append"}:
            effects.targets += _targets(parsed.operands, "truncate", Effect.WRITE)
    elif name in ("chmod", "chown", "chgrp"):
        effects.targets += _recursive_permissions(name, args)
    elif name == "sed":
        effects.targets += _sed_in_place(args)
    elif name == "perl":
        effects.targets += _perl_in_place(args)
    elif name == "rsync":
        effects.targets += _rsync(args)
    elif name == "find":
        effects.extend(_find(args))
    elif name.startswith("mkfs") or name in ("wipefs", "mkswap"):
        effects.targets += _targets(parse_options(args).operands, "format", Effect.WRITE)
    elif name == "git":
        action = git_action(args)
        if action:
            effects.git.append(action)
    return effects


def _copy_like(name: str, args: list[str]) -> list[Target]:
    value_short = {"install": "mogSt", "ln": "St"}.get(name, "St")
    parsed = parse_options(args, value_short, ("target-directory", "suffix", "mode", "owner", "group"))
    if name == "ln" and not parsed.flags & {"f", "force", "b", "backup"}:
        return []  # without -f, ln refuses to replace anything
    if name == "install" and parsed.flags & {"d", "directory"}:
        return []  # only creates directories
    verbs = {"mv": "move over", "cp": "copy over", "install": "install over", "ln": "replace with a link"}
    operands = parsed.operands
    target_dirs = parsed.values.get("t", []) + parsed.values.get("target-directory", [])
    if target_dirs:
        sources, destinations = operands, target_dirs
    elif name == "ln" and len(operands) == 1:
        sources, destinations = operands, ["."]  # the link is made in the current directory
    else:
        sources, destinations = operands[:-1], operands[-1:]
    targets = _targets(destinations, verbs[name], Effect.DESTINATION)
    if name == "mv":
        targets += _targets(sources, "move away", Effect.REMOVE)
    return targets


_MODE_WORD = set("rwxXstugoa+-=,0123456789")


def _recursive_permissions(name: str, args: list[str]) -> list[Target]:
    # `chmod -R -w dir`: a mode may look like an option, so split by hand.
    recursive, operands, reference = False, [], False
    for arg in args:
        if isinstance(arg, Unknown) or not arg.startswith("-") or operands:
            operands.append(arg)
        elif arg in ("-R", "--recursive"):
            recursive = True
        elif arg.startswith("--reference"):
            reference = True
        elif arg.startswith("--"):
            continue
        elif set(arg[1:]) <= set("RcfvHLP"):
            recursive |= "R" in arg
        elif name == "chmod" and set(arg) <= _MODE_WORD:
            operands.append(arg)  # a mode such as -w
    if not recursive:
        return []
    paths = operands if reference else operands[1:]
    what = "permissions" if name == "chmod" else "ownership"
    return _targets(paths, f"recursively change {what} of", Effect.WRITE)


def _sed_in_place(args: list[str]) -> list[Target]:
    parsed = parse_options(args, value_short="efl", value_long=("expression", "file"), attached_short="i")
    if not parsed.flags & {"i", "in-place"}:
        return []
    has_script_option = bool(parsed.flags & {"e", "f", "expression", "file"})
    return _targets(
        parsed.operands if has_script_option else parsed.operands[1:], "rewrite in place", Effect.WRITE
    )


def _perl_in_place(args: list[str]) -> list[Target]:
    # -i takes the rest of its cluster as a backup extension, as -I, -M and friends take theirs.
    parsed = parse_options(args, value_short="eE", attached_short="iIMmdxlC0")
    if "i" not in parsed.flags:
        return []
    has_code = bool(parsed.flags & {"e", "E"})
    return _targets(parsed.operands if has_code else parsed.operands[1:], "rewrite in place", Effect.WRITE)


def _rsync(args: list[str]) -> list[Target]:
    value_short = "efTMB"
    value_long = (
        "rsh", "rsync-path", "filter", "exclude", "include", "exclude-from", "include-from", "files-from",
        "partial-dir", "temp-dir", "backup-dir", "log-file", "password-file", "timeout", "port", "chmod",
        "chown", "suffix", "compare-dest", "copy-dest", "link-dest", "max-size", "min-size", "bwlimit",
        "out-format", "info", "debug", "iconv", "skip-compress", "log-file-format",
    )  # fmt: skip
    parsed = parse_options(args, value_short, value_long)
    if len(parsed.operands) < 2:
        return []
    *sources, destination = parsed.operands
    targets = []
    if not _is_remote(destination):
        deletes = any(flag.startswith("delete") for flag in parsed.flags)
        effect = Effect.SUBTREE if deletes else Effect.DESTINATION
        targets.append(
            Target(destination, "sync (deleting extra files) into" if deletes else "sync onto", effect)
        )
    if "remove-source-files" in parsed.flags:
        targets += [Target(s, "move away", Effect.SUBTREE) for s in sources if not _is_remote(s)]
    return targets


def _is_remote(location: str) -> bool:
    head = location.split("/", 1)[0]
    return ":" in head


_FIND_NAME_TESTS = ("-name", "-iname", "-path", "-ipath", "-wholename", "-iwholename", "-regex", "-iregex")


def _split_find(args: list[str]) -> tuple[list[str], list[str]]:
    """find's starting points and its expression."""
    i = 0
    while i < len(args) and (args[i] in ("-H", "-L", "-P") or args[i].startswith("-O")):
        i += 1
    starts = []
    while i < len(args) and (isinstance(args[i], Unknown) or not args[i].startswith(("-", "(", "!"))):
        starts.append(args[i])
        i += 1
    return starts or ["."], args[i:]


def find_results(args: list[str]) -> Found:
    """What `find ARGS` selects (and prints), for `-exec {}` and for a following xargs."""
    starts, expression = _split_find(args)
    return Found(starts, _find_filters_spare_git(expression))


def _find(args: list[str]) -> Effects:
    effects = Effects()
    expression = _split_find(args)[1]
    found = find_results(args)
    j = 0
    while j < len(expression):
        word = expression[j]
        if word == "-delete":
            effects.targets += _targets([found], "delete", Effect.REMOVE)
        elif word in ("-exec", "-execdir", "-ok", "-okdir"):
            end = j + 1
            while end < len(expression) and expression[end] not in (";", "+"):
                end += 1
            command = [found if "{}" in w else w for w in expression[j + 1 : end]]
            if command:
                effects.runs.append(command)
            effects.extend(effects_of(command))
            j = end
        elif word in ("-fprint", "-fprint0", "-fprintf", "-fls") and j + 1 < len(expression):
            effects.targets.append(Target(expression[j + 1], "overwrite", Effect.WRITE))
        j += 1
    return effects


def _find_filters_spare_git(expression: list[str]) -> bool:
    """True when a name test limits what find selects and no such test can select .git."""
    limited = False
    for j, word in enumerate(expression[:-1]):
        if word not in _FIND_NAME_TESTS:
            continue
        pattern = expression[j + 1]
        followed_by_prune = j + 2 < len(expression) and expression[j + 2] == "-prune"
        if followed_by_prune or (j > 0 and expression[j - 1] in ("!", "-not")):
            continue  # `-path ./.git -prune`, `! -path './.git/*'`: excludes .git
        if isinstance(pattern, Unknown) or ".git" in pattern or _could_select_git(word, pattern):
            return False
        limited = True
    return limited


# Names and paths found inside a .git directory, to test find's name patterns against.
_GIT_NAMES = (
    ".git", "index", "HEAD", "ORIG_HEAD", "FETCH_HEAD", "config", "description", "packed-refs",
    "COMMIT_EDITMSG", "objects", "refs", "heads", "tags", "hooks", "info", "logs", "pack", "main",
    "master", "exclude", "pack-1a2b.pack", "pack-1a2b.idx", "pack-1a2b.rev", "pre-commit.sample",
    "1a", "2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d",
)  # fmt: skip
_GIT_PATHS = tuple(
    prefix + suffix
    for prefix in ("./", "/ws/")
    for suffix in (".git", ".git/index", ".git/HEAD", ".git/objects/1a/2b3c", ".git/refs/heads/main",
                   ".git/objects/pack/pack-1a2b.pack", ".git/hooks/pre-commit.sample", ".git/logs/HEAD")
)  # fmt: skip


def _could_select_git(test: str, pattern: str) -> bool:
    if test.endswith("regex"):
        return True  # regexes are not judged; assume they can
    candidates = _GIT_NAMES if test in ("-name", "-iname") else _GIT_PATHS
    if test.startswith("-i"):
        return any(fnmatch.fnmatchcase(c.lower(), pattern.lower()) for c in candidates)
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)
