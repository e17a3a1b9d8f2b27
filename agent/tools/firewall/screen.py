"""The destructive-action firewall: screens every shell command before it runs.

It is active in every permission mode and cannot be turned off. A command is refused when it
would delete, move over, truncate, overwrite through a redirection, or recursively chmod/chown
anything outside the workspace, the workspace root itself, or the workspace's `.git`; and when a
git command would throw away uncommitted work (`git reset --hard`, `git checkout -- PATHS` /
`git restore PATHS` on files with changes, `git clean -f` with something to delete), which is
checked against the repository's real state.

How it reads a command: bashlex parses it into an AST, which is walked with a model of the
shell's state: the possible current directories (`cd X && ...`, `cd X; ...` where the cd may
fail, subshells that do not leak their cd), variables assigned earlier in the command and loop
variables, `~` and `$HOME`. Wrappers are peeled (sudo, env, nice, nohup, timeout, stdbuf,
xargs, flock, watch), nested shell strings are parsed in turn (`sh -c`, `bash -c`, `su -c`,
`eval` of literal strings, here-documents and `echo ... |` fed to a shell), and command
substitutions, process substitutions and function bodies are checked as if they run. When
bashlex cannot parse a command, a shlex-based splitter takes over; when that fails too, a
command containing a risky verb is refused. An argument whose value cannot be known (an
unknown variable, `$(...)`, `$1`) is refused as a destructive target.

What it cannot see (and so cannot stop):
- scripts and programs that delete things themselves: `./clean.sh`, `make clean`, `python -c
  "import os; os.remove(...)"`, `node -e ...`, `perl -e 'unlink ...'`, `tar -x -C /`, installers;
- `eval` of computed strings, `source`/`.` of files, aliases and functions defined outside the
  command, `curl ... | sh`, shell options that change expansion (except `dotglob`);
- the actual expansion of globs (a glob is judged by the directory it reads and whether its
  pattern can match `.git`), symlinks a glob passes through with a trailing `/`;
- what a `find -name PATTERN` may select inside `.git` beyond the usual git file names (a
  pattern equal to a branch name, for instance), and regex tests, which are assumed to match;
- anything done by a process that keeps running after the command returns.
See docs/safety.md.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from agent.tools.firewall.git_probe import GitAction, GitProbe
from agent.tools.firewall.paths import Effect, Target, Workspace, protection_reason
from agent.tools.firewall.verbs import (
    RISKY_VERBS,
    SHELLS,
    Effects,
    command_name,
    effects_of,
    find_results,
)
from agent.tools.firewall.words import Found, Unknown, parse_options

MAX_NESTING = 8  # nested shell strings inside shell strings
MAX_CANDIDATES = 16  # possible cwds / variable values tracked before giving up as unknown


@dataclass
class Verdict:
    allowed: bool
    reasons: list[str] = field(default_factory=list)
    message: str = ""  # for the model; empty when allowed


def check_command(
    command: str,
    *,
    cwd: str,
    root: str,
    home: str,
    realpath: Callable[[str], str] = os.path.realpath,
    git_probe: GitProbe | None = None,
) -> Verdict:
    """Decides whether `command`, run by bash in `cwd`, may run."""
    workspace = Workspace(root=realpath(root), home=home, realpath=realpath)
    checker = _Checker(workspace, git_probe, dotglob="dotglob" in command)
    checker.check_source(command, _State(cwds=frozenset([cwd])))
    if not checker.reasons:
        return Verdict(True)
    reasons = list(dict.fromkeys(checker.reasons))  # keep order, drop repeats
    return Verdict(False, reasons, _refusal_message(reasons, workspace.root, cwd))


# -- the simple commands a command line runs (what permission rules match) --------------------


@dataclass
class SimpleCommand:
    """One command the shell would run: its argv (variables set earlier in the line expanded, other
    words as written) and the NAME=value words in front of it."""

    argv: list[str]
    assignments: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """What a `bash(...)` rule matches: the words re-quoted, so `"a b"` cannot pose as two."""
        return shlex.join([*self.assignments, *self.argv])


@dataclass
class CommandLine:
    commands: list[SimpleCommand] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # what reading cannot see, each saying why
    writes: list[str] = field(default_factory=list)  # redirections that write a file, as written


def simple_commands(command: str) -> CommandLine:
    """Every simple command `command` would run, found by the same walk the firewall makes.

    That includes the parts of `;`, `&&`, `||` and pipelines, subshells and groups, `$(...)`,
    backticks and process substitutions, function bodies, the strings of `sh -c`, `eval` and `su -c`,
    here-strings and documents fed to a shell, and the commands wrappers start (`timeout 5 X` gives
    both `timeout 5 X` and `X`; also xargs, env, nice, find -exec ...). `hidden` lists what cannot be
    seen: text bashlex cannot parse, a command named by an unknown value (`$X args`, `eval "$V"`),
    `source FILE`, a shell reading an unknown script from stdin, code fed to an interpreter through
    a here-document or here-string, `${X:-$(cmd)}`, and anything that touches IFS.
    """
    line = CommandLine()
    workspace = Workspace(root="/", home="~", realpath=posixpath.normpath)  # lexical: no file access
    checker = _Checker(workspace, git_probe=None, dotglob=False, seen=line)
    checker.check_source(command, _State(cwds=frozenset(["/"])))
    return line


# Programs that run code read from stdin: a here-document fed to one is code nobody reviewed.
_INTERPRETER = re.compile(
    r"(python|pypy|perl|ruby|irb|node|nodejs|deno|bun|php|lua|luajit|R|Rscript|tclsh|wish|osascript|"
    r"sqlite3|psql|mysql|gdb|expect|julia|guile|racket|scheme|ghci|jshell|scala|powershell|pwsh)"
    r"[\d.]*"
)
_HARMLESS_OUTPUTS = re.compile(r"/dev/(null|stdout|stderr|tty|fd/\d+)")
_WRITING_REDIRECTS = (">", ">>", ">|", "&>", "&>>", "<>", ">&")


def _refusal_message(reasons: list[str], root: str, cwd: str) -> str:
    listed = "\n".join(f"- {r}" for r in reasons[:10])
    return (
        "Refused by the safety firewall (always on, in every permission mode); nothing was run:\n"
        f"{listed}\n"
        f"It blocks commands that delete, move over, truncate or recursively re-permission anything "
        f"outside the workspace ({root}), the workspace root itself, or its .git, and git commands that "
        f"would throw away uncommitted work. Relative paths were resolved from {cwd}. Use explicit "
        "paths inside the workspace; for git, commit or stash the work first, or change files with "
        "edit_file. If this really is needed, ask the user to run it themselves."
    )


# -- the shell's state as far as we can follow it ------------------------------------------


@dataclass(frozen=True)
class _State:
    cwds: frozenset[str | None]  # None: a directory we cannot know
    variables: tuple[tuple[str, tuple[str, ...]], ...] = ()  # name -> possible values

    def variable(self, name: str) -> tuple[str, ...] | None:
        for key, values in self.variables:
            if key == name:
                return values
        return None

    def with_variable(self, name: str, values: tuple[str, ...]) -> _State:
        kept = tuple((k, v) for k, v in self.variables if k != name)
        if len(values) > MAX_CANDIDATES:
            values = (Unknown(f"${name}"),)
        return replace(self, variables=kept + ((name, values),))

    def union(self, other: _State) -> _State:
        """Either state may hold: a variable set on one path only is unknown afterwards."""
        cwds = _merged_cwds(self.cwds, other.cwds)
        names = dict.fromkeys([k for k, _ in self.variables] + [k for k, _ in other.variables])
        variables = []
        for name in names:
            a, b = self.variable(name), other.variable(name)
            if a is None or b is None:
                continue  # set on one path only: its value is unknown afterwards
            variables.append((name, tuple(dict.fromkeys(a + b))))
        return _State(cwds, tuple(variables))


def _merged_cwds(a: frozenset[str | None], b: frozenset[str | None]) -> frozenset[str | None]:
    cwds = a | b
    return cwds if len(cwds) <= MAX_CANDIDATES else frozenset([None])


@dataclass
class _Stdin:
    """What the previous command of a pipeline writes, as far as we know."""

    words: list[str] | None = None  # for xargs
    text: str | None = None  # for a shell reading its script from stdin


_PARAMETER = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z_0-9]*|[0-9@*#?$!-])")
_RISKY_WORD = re.compile(r"(?<![\w.-])(" + "|".join(sorted(RISKY_VERBS)) + r"|mkfs[\w.]*)(?![\w-])")
_PWD_SUBSTITUTION = re.compile(r"\$\(\s*pwd\s*\)|`\s*pwd\s*`")
_PASS_THROUGH_FILTERS = {"grep", "egrep", "fgrep", "sort", "uniq", "head", "tail", "cat", "tac"}


class _Checker:
    def __init__(
        self,
        workspace: Workspace,
        git_probe: GitProbe | None,
        dotglob: bool,
        seen: CommandLine | None = None,
    ):
        self.ws = workspace
        self.git_probe = git_probe
        self.dotglob = dotglob
        self.reasons: list[str] = []
        self.depth = 0
        self.seen = seen  # when set, every simple command met on the walk is recorded there
        self.sources: list[str] = []  # the shell text being walked, innermost last

    def _hide(self, reason: str) -> None:
        if self.seen is not None:
            self.seen.hidden.append(reason)

    # -- entry points ----------------------------------------------------------------------

    def check_source(self, source: str, state: _State) -> _State:
        if self.depth > MAX_NESTING:
            self.reasons.append("shell strings nested too deeply to check")
            self._hide("shell strings nested too deeply to read")
            return state
        self.depth += 1
        self.sources.append(source)
        try:
            import bashlex  # imported here: building its parser costs ~0.3 s, paid on first use only

            try:
                nodes = bashlex.parse(source)
            except Exception:  # bashlex raises several types for bash it does not support
                self._hide(f"`{_clip(source)}` uses shell syntax the parser does not read")
                return self._check_without_ast(source, state)
            for node in nodes:  # lines of a script: like `;`, an earlier cd may have failed
                after = self.visit(node, state)
                state = replace(after, cwds=_merged_cwds(state.cwds, after.cwds))
            return state
        finally:
            self.sources.pop()
            self.depth -= 1

    # -- the AST walk ----------------------------------------------------------------------

    def visit(self, node, state: _State, stdin: _Stdin | None = None) -> _State:
        kind = node.kind
        if kind == "list":
            return self._visit_list(node.parts, state)
        if kind == "pipeline":
            self._visit_pipeline(node.parts, state)
            return state  # every part runs in a subshell
        if kind == "command":
            return self._visit_command(node, state, stdin or _Stdin())[0]
        if kind == "compound":
            for redirect in getattr(node, "redirects", []):
                self._check_redirect(redirect, state)
            inner = state
            for child in node.list:
                if child.kind not in ("reservedword", "operator"):
                    inner = self.visit(child, inner)
            is_subshell = node.list and node.list[0].kind == "reservedword" and node.list[0].word == "("
            return state if is_subshell else inner
        if kind in ("if", "while", "until"):
            for child in node.parts:
                if child.kind not in ("reservedword", "operator"):
                    state = state.union(self.visit(child, state))
            return state
        if kind == "for":
            return self._visit_for(node, state)
        if kind == "function":
            self.visit(node.body, state)  # checked as if called
            return state
        return state

    def _visit_list(self, parts, state: _State) -> _State:
        current, before, start = state, state, state
        for part in parts:
            if part.kind == "operator":
                if part.op == "&&":
                    start = current
                elif part.op == "&":
                    start = before  # a background job's cd does not reach us
                else:  # ";", "||", newline: a cd in the previous command may have failed
                    start = replace(current, cwds=_merged_cwds(before.cwds, current.cwds))
                continue
            before = start
            current = self.visit(part, start)
            start = current
        return current

    def _visit_pipeline(self, parts, state: _State) -> None:
        stdin = _Stdin()
        for part in parts:
            if part.kind == "command":
                _, stdin = self._visit_command(part, state, stdin)
            elif part.kind not in ("pipe", "reservedword"):
                self.visit(part, state)
                stdin = _Stdin()

    def _visit_for(self, node, state: _State) -> _State:
        parts = node.parts
        words = [p for p in parts if p.kind == "word"]
        body = [p for p in parts if p.kind not in ("word", "reservedword", "operator")]
        if not words:
            return state
        name = words[0].word
        has_in = any(p.kind == "reservedword" and p.word == "in" for p in parts)
        values: list[str] = []
        for word in words[1:]:
            values += self._expand(word, state)
        inner = state.with_variable(name, tuple(values) if has_in else (Unknown('"$@"'),))
        for child in body:
            inner = inner.union(self.visit(child, inner))
        return state.union(inner)

    def _visit_command(self, node, state: _State, stdin: _Stdin) -> tuple[_State, _Stdin]:
        words, assignments, heredoc = [], [], None
        for part in node.parts:
            if part.kind == "word":
                words.append(part)
            elif part.kind == "assignment":
                assignments.append(part)
            elif part.kind == "redirect":
                self._check_redirect(part, state)
                if part.type in ("<<", "<<-") and getattr(part, "heredoc", None) is not None:
                    heredoc = part.heredoc.value.rsplit("\n", 1)[0]
                    self._check_heredoc_substitutions(heredoc, state)
                elif part.type == "<<<":
                    stdin = _Stdin(text=self._expand_single(part.output, state))
        assigned = [
            (a.word.split("=", 1)[0], self._expand_text(a.word.split("=", 1)[1], a, state))
            for a in assignments
        ]
        assignment_words = [a.word for a in assignments]
        if not words:
            if assignment_words and self.seen is not None:
                self._notice([], assignment_words, Effects(), feeds_code=False)
            for name, values in assigned:
                state = state.with_variable(name, tuple(values))
            return state, _Stdin()
        word_values = [self._expand(w, state) for w in words]
        combinations = list(itertools.islice(itertools.product(*word_values), MAX_CANDIDATES + 1))
        if len(combinations) > MAX_CANDIDATES:
            combinations = [tuple(v[0] if len(v) == 1 else Unknown("<many values>") for v in word_values)]
        new_state = None
        produced = _Stdin()
        feeds_code = heredoc is not None or any(
            part.kind == "redirect" and part.type == "<<<" for part in node.parts
        )
        for argv in combinations:
            argv = list(argv)
            effects = self._check_argv(argv, state, stdin if heredoc is None else _Stdin(text=heredoc))
            if self.seen is not None:
                self._notice(argv, assignment_words, effects, feeds_code)
            after = self._state_after(argv, state)
            new_state = after if new_state is None else new_state.union(after)
            produced = _output_of(argv, stdin)
        return new_state or state, produced

    def _check_heredoc_substitutions(self, body: str, state: _State) -> None:
        """A here-document with an unquoted delimiter (bashlex reads no other kind) is expanded:
        its `$(...)` and backticks run. Checked like the fallback's substitutions; kept hidden from
        permission rules too, as finding them without a parser can be fooled."""
        if "$(" not in body and "`" not in body:
            return
        for inner in _substitution_bodies(body):
            self.check_source(inner, state)
        self._hide("a here-document runs the commands in its `$(...)` or backticks")

    def _notice(self, argv: list[str], assignments: list[str], effects: Effects, feeds_code: bool) -> None:
        """Records a simple command and the commands it starts, and whatever about them is hidden."""
        assert self.seen is not None
        layers = [argv, *effects.runs] if argv else []
        self.seen.commands.append(SimpleCommand(list(argv), list(assignments)))
        self.seen.commands += [SimpleCommand(list(run)) for run in effects.runs]
        if any("IFS" in word for word in [*assignments, *argv]):
            self._hide("it changes IFS, which changes how every later word is split")
        for layer in layers:
            name = layer[0]
            if isinstance(name, Unknown) or (name != "[" and re.search(r"[\s*?\[\]{}$`'\"\\]", name)):
                self._hide(
                    f"`{_clip(name)}` is not a plain command name (a variable, a pattern, split words)"
                )
            elif command_name(name) in ("source", "."):
                self._hide(f"`{_clip(shlex.join(layer))}` runs a file's commands in this shell")
            elif feeds_code and (command_name(name) in SHELLS or _INTERPRETER.fullmatch(command_name(name))):
                self._hide(f"`{_clip(shlex.join(layer))}` runs code from a here-document or here-string")

    def _state_after(self, argv: list[str], state: _State) -> _State:
        name = command_name(argv[0])
        if name in ("cd", "pushd"):
            operands = [a for a in argv[1:] if not (a.startswith("-") and a != "-") or isinstance(a, Unknown)]
            destination = operands[0] if operands else self.ws.home
            return replace(state, cwds=frozenset(self._join(cwd, destination) for cwd in state.cwds))
        if name == "popd":
            return replace(state, cwds=frozenset([None]))
        if name in ("export", "declare", "local", "readonly", "typeset"):
            for arg in argv[1:]:
                if "=" in arg and not arg.startswith("-"):
                    key, value = arg.split("=", 1)
                    state = state.with_variable(key, (Unknown(value) if isinstance(arg, Unknown) else value,))
        if name in ("unset", "read"):
            for arg in argv[1:]:
                state = state.with_variable(arg, (Unknown(f"${arg}"),))
        return state

    def _join(self, cwd: str | None, directory: str) -> str | None:
        if isinstance(directory, Unknown) or directory == "-":
            return None
        if not directory.startswith("/"):
            if cwd is None:
                return None
            directory = os.path.join(cwd, directory)
        return self.ws.realpath(directory)

    # -- words -----------------------------------------------------------------------------

    def _expand(self, word, state: _State) -> list[str]:
        """The values a word may take (Unknown where it cannot be known)."""
        return self._expand_text(word.word, word, state)

    def _expand_single(self, word, state: _State) -> str:
        values = self._expand(word, state) if hasattr(word, "word") else [str(word)]
        return values[0] if len(values) == 1 else Unknown(values[0])

    def _expand_text(self, text: str, node, state: _State) -> list[str]:
        parts = getattr(node, "parts", None) or []
        substitutions = [p for p in parts if p.kind in ("commandsubstitution", "processsubstitution")]
        for part in parts:
            if part.kind == "parameter" and re.search(r"\$\(|`|[<>]\(", part.value or ""):
                self._hide(f"`{_clip(text)}` hides a command inside a parameter expansion")
        for sub in substitutions:
            self.visit(sub.command, state)  # they run, so they are checked
        if not parts:
            return [text]  # no expansion happens (quoted, or plain)
        if substitutions and all(_is_plain_pwd(sub.command) for sub in substitutions):
            text = _PWD_SUBSTITUTION.sub("$PWD", text)  # `rm -rf $(pwd)/build` is common and knowable
        elif substitutions:
            return [Unknown(text)]
        return self._substitute(text, state)

    def _substitute(self, text: str, state: _State) -> list[str]:
        if text == "~" or text.startswith("~/"):
            text = self.ws.home + text[1:]
        elif text.startswith("~"):
            return [Unknown(text)]  # ~user, ~+, ~-
        pieces: list[list[str]] = []
        position = 0
        for match in _PARAMETER.finditer(text):
            pieces.append([text[position : match.start()]])
            name = match.group(1) if match.group(1) is not None else match.group(2)
            values = self._variable_values(name, state)
            if values is None:
                return [Unknown(text)]
            pieces.append(values)
            position = match.end()
        pieces.append([text[position:]])
        results = []
        for combination in itertools.islice(itertools.product(*pieces), MAX_CANDIDATES + 1):
            if any(isinstance(piece, Unknown) for piece in combination):
                return [Unknown(text)]
            results.append("".join(combination))
        return results if len(results) <= MAX_CANDIDATES else [Unknown(text)]

    def _variable_values(self, name: str, state: _State) -> list[str] | None:
        known = state.variable(name)
        if known is not None:
            return list(known)
        if name == "HOME":
            return [self.ws.home]
        if name == "PWD" and None not in state.cwds:
            return sorted(state.cwds)
        return None

    # -- judging ---------------------------------------------------------------------------

    def _check_redirect(self, redirect, state: _State) -> None:
        output = redirect.output
        if not hasattr(output, "word"):
            return  # `>&2`: a file descriptor, not a file
        values = self._expand(output, state)
        if (
            self.seen is not None
            and redirect.type in _WRITING_REDIRECTS
            and not all(_HARMLESS_OUTPUTS.fullmatch(v) for v in values)
            and not (redirect.type == ">&" and output.word.isdigit())
        ):
            start, end = redirect.pos
            self.seen.writes.append(self.sources[-1][start:end] if self.sources else output.word)
        if redirect.type in (">", ">|", "&>") or (redirect.type == ">&" and not output.word.isdigit()):
            for value in values:
                self._judge(Target(value, "truncate (redirect onto)", Effect.WRITE), state.cwds)

    def _check_argv(self, argv: list[str], state: _State, stdin: _Stdin) -> Effects:
        effects = effects_of(argv, stdin.words)
        cwds = self._effective_cwds(effects, state.cwds)
        for target in effects.targets:
            self._judge(target, cwds)
        nested = replace(state, cwds=cwds)
        for script in effects.scripts:
            if isinstance(script, Unknown):
                self._hide(f"`{_clip(shlex.join(argv))}` runs shell code known only when it runs")
            self._check_script(script, nested)
        if effects.reads_script_from_stdin and stdin.text is not None:
            self._check_script(stdin.text, nested)
        elif effects.reads_script_from_stdin:
            self._hide(f"`{_clip(shlex.join(argv))}` runs commands it reads from its input")
        for action in effects.git:
            self._check_git(action, cwds)
        return effects

    def _effective_cwds(self, effects: Effects, cwds: frozenset[str | None]) -> frozenset[str | None]:
        if effects.unknown_cwd:
            return frozenset([None])
        if effects.chdir:
            return frozenset(self._join(cwd, effects.chdir) for cwd in cwds)
        return cwds

    def _check_script(self, script: str, state: _State) -> None:
        # A script with unknown parts is parsed as written: an unknown `$X` stays unknown inside,
        # so `bash -c "rm -rf $X"` is still refused, while `bash -c "$CMD"` cannot be seen.
        self.check_source(str(script), state)

    def _judge(self, target: Target, cwds: frozenset[str | None]) -> None:
        if isinstance(target.text, Unknown):
            self.reasons.append(
                f"would {target.verb} `{target.text}`, whose value cannot be known before running; "
                "write the path out literally"
            )
            return
        for cwd in sorted(cwds, key=lambda c: c or ""):
            reason = protection_reason(target, cwd, self.ws, self.dotglob)
            if reason:
                self.reasons.append(f"would {target.verb} {target.text}: {reason}")
                return

    def _check_git(self, action: GitAction, cwds: frozenset[str | None]) -> None:
        if action.opaque:
            self.reasons.append(
                f"{action.command} with --git-dir/--work-tree cannot be checked for lost work"
            )
            return
        if any(isinstance(p, Unknown) for p in action.pathspecs + action.clean_args):
            self.reasons.append(f"{action.command} with arguments that cannot be known before running")
            return
        for cwd in cwds:
            for directory in action.chdirs:
                cwd = self._join(cwd, directory)
            if cwd is None:
                self.reasons.append(f"{action.command}: cannot tell which repository it would run in")
                return
            if self.git_probe is None:
                self.reasons.append(
                    f"{action.command} may throw away uncommitted work (the repository was not inspected)"
                )
                return
            self._check_git_in(action, cwd)

    def _check_git_in(self, action: GitAction, cwd: str) -> None:
        if action.kind == "clean":
            doomed = self.git_probe.files_clean_would_remove(cwd, action.clean_args)
            what = "delete untracked files that no commit or checkpoint can bring back"
        else:
            doomed = self.git_probe.dirty_files(cwd, action.pathspecs)
            what = "throw away uncommitted changes"
        if doomed:
            listed = ", ".join(doomed[:8]) + (f" and {len(doomed) - 8} more" if len(doomed) > 8 else "")
            self.reasons.append(f"{action.command} would {what}: {listed}")

    # -- when bashlex cannot parse ---------------------------------------------------------

    def _check_without_ast(self, source: str, state: _State) -> _State:
        for inner in _substitution_bodies(source):
            self.check_source(inner, state)
        try:
            lexer = shlex.shlex(source.replace("\n", " ; "), posix=True, punctuation_chars=";&|()<>")
            lexer.whitespace_split = True
            tokens = list(lexer)
        except ValueError:
            risky = _RISKY_WORD.search(source)
            if risky:
                self.reasons.append(
                    f"the command could not be parsed, and it contains `{risky.group(1)}`; fix the quoting "
                    "or split it into simpler commands"
                )
            return state
        start = current = state
        for argv, redirects, operator in _simple_commands(tokens):
            for redirect in redirects:
                self._judge(
                    Target(self._expand_plain(redirect, start), "truncate (redirect onto)", Effect.WRITE),
                    start.cwds,
                )
            if argv:
                argv = [self._expand_plain(word, start) for word in argv]
                self._check_argv(argv, start, _Stdin())
                current = self._state_after(argv, start)
            start = (
                current if operator == "&&" else replace(current, cwds=_merged_cwds(start.cwds, current.cwds))
            )
        return start

    def _expand_plain(self, word: str, state: _State) -> str:
        if "$(" in word or "`" in word:
            return Unknown(word)
        values = self._substitute(word, state) if ("$" in word or word.startswith("~")) else [word]
        return values[0] if len(values) == 1 else Unknown(word)


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_plain_pwd(node) -> bool:
    return node.kind == "command" and [getattr(p, "word", None) for p in node.parts] == ["pwd"]


def _output_of(argv: list[str], stdin: _Stdin) -> _Stdin:
    """What a command writes to a pipe, for a following xargs or shell."""
    name = command_name(argv[0])
    args = argv[1:]
    if name == "echo":
        words = [a for a in args if not (a.startswith("-") and set(a[1:]) <= set("neE"))]
        return _Stdin(words=words, text=" ".join(words))
    if name == "printf":
        return _Stdin(words=args[1:], text=" ".join(args))
    if name == "find":
        return _Stdin(words=[find_results(args)])
    if name == "git" and args[:1] in (["ls-files"], ["diff"]):
        return _Stdin(words=[Found(["."], spares_git=True)])  # paths of tracked files below cwd
    if (
        name in _PASS_THROUGH_FILTERS
        and not parse_options(args, "efmABCn").operands[1 if name.endswith("grep") else 0 :]
    ):
        return stdin  # only narrows (or reorders) what came in
    return _Stdin()


def _simple_commands(tokens: list[str]):
    """Splits shlex tokens into (argv, redirect targets, the operator that follows)."""
    argv: list[str] = []
    redirects: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in (";", ";;", "&&", "||", "|", "|&", "&", "(", ")"):
            yield argv, redirects, token
            argv, redirects = [], []
        elif token in (">", ">|", "&>", ">&") and i + 1 < len(tokens):
            i += 1
            if not tokens[i].isdigit():
                redirects.append(tokens[i])
        elif token in (">>", "&>>", "<", "<<", "<<<", "<>") and i + 1 < len(tokens):
            i += 1
        elif set(token) <= set(";&|()<>"):
            yield argv, redirects, ";"
            argv, redirects = [], []
        else:
            argv.append(token)
        i += 1
    yield argv, redirects, ";"


def _substitution_bodies(source: str) -> list[str]:
    """The text inside each `$(...)` and backtick pair, found without a full parser."""
    bodies = re.findall(r"`([^`]*)`", source)
    start = source.find("$(")
    while start != -1:
        depth, i = 0, start + 1
        while i < len(source):
            if source[i] == "(":
                depth += 1
            elif source[i] == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        body = source[start + 2 : i]
        if not body.startswith("("):  # $(( arithmetic ))
            bodies.append(body)
        start = source.find("$(", start + 2)
    return bodies
