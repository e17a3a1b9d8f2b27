"""Keeps credentials out of everything that leaves the process.

Which values are secret: those of environment variables whose names look like credentials
(CREDENTIAL_NAME) and are at least MIN_SECRET_LENGTH characters long, plus whatever a session adds
(the backend's own API key, whatever its variable is called). Short values are left alone:
redacting "1" or "true" everywhere would wreck ordinary text and protect nothing.

One `Redactor` per session replaces each of them with `[REDACTED:NAME]` in tool results, in every
event (so stdout in every format, the session file, eval trajectories and the terminal UI), in the
result's diff and in refusal messages. It finds a secret:
- as written, or with any of its characters escaped the way JSON, Python's repr/ascii of str and
  bytes, `printf %q` or URL encoding write them, in any mix, with the backslashes doubled up to
  eight deep (`print(os.environ)` doubles them; JSON of that doubles them again);
- as the hex of its UTF-8 bytes, in either case;
- as base64, standard and URL-safe, in all three alignments (a secret in the middle of a longer
  encoded text), padded or not, wrapped across lines.

Output that arrives in pieces (model deltas, a command's output cut to a head and a tail, reads of a
background job) is redacted with `unfinished_end`/`unfinished_start`: the end of a piece that could
be the start of a secret is held back (or dropped at a cut), so a secret split across pieces never
shows its first characters. What it cannot see: secrets that are not in the environment (files,
keychains), and other transformations (reversed, split by the program that prints them, compressed,
encrypted, other encodings).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
from collections.abc import Mapping
from typing import Any

import regex

CREDENTIAL_NAME = regex.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", regex.IGNORECASE)
MIN_SECRET_LENGTH = 6

_BACKSLASHES = r"\\{1,8}"  # one escape, doubled by each further layer of quoting
_NAMED_ESCAPES = {"\n": "n", "\t": "t", "\r": "r", "\b": "b", "\f": "f", "\v": "v", "\0": "0", "\a": "a"}
_LINE_BREAK = r"(?:\r?\n)?"  # base64 tools wrap long output


def secret_values(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """{value: variable name} for the credential-looking variables of `env` (default: ours)."""
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    for name, value in env.items():
        if CREDENTIAL_NAME.search(name) and len(value.strip()) >= MIN_SECRET_LENGTH:
            found.setdefault(value, name)
    return found


class Redactor:
    """Replaces known secret values, in the forms listed in the module docstring."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        """`secrets`: {value: name}."""
        self.secrets = dict(secrets)
        self._names: dict[str, str] = {}
        alternatives = []
        # Longest first, so a value that contains another one is replaced whole.
        for i, value in enumerate(sorted(self.secrets, key=lambda v: (-len(v), v))):
            self._names[f"s{i}"] = self.secrets[value]
            alternatives.append(f"(?P<s{i}>{_value_pattern(value)})")
        source = "|".join(alternatives)
        self._pattern = regex.compile(source) if source else None
        self._backwards = regex.compile(source, regex.REVERSE) if source else None

    @classmethod
    def for_environment(cls, env: Mapping[str, str] | None = None, extra: Mapping[str, str] = ()) -> Redactor:
        """Credential-looking variables of `env` (default: ours), plus `extra` {name: value}, which
        are secret whatever they are called."""
        secrets = secret_values(env)
        for name, value in dict(extra).items():
            if value and len(value.strip()) >= MIN_SECRET_LENGTH:
                secrets.setdefault(value, name)
        return _cached(tuple(sorted(secrets.items())))

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(self._replacement, text)

    def redact_data(self, value: Any) -> Any:
        """`redact` applied to every string inside nested dicts (keys too) and lists."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_data(v) for v in value]
        return value

    def redact_event(self, event: Any) -> Any:
        """A copy of a dataclass event with every field redacted."""
        if self._pattern is None or not dataclasses.is_dataclass(event):
            return event
        changes = {
            f.name: self.redact_data(getattr(event, f.name)) for f in dataclasses.fields(event) if f.init
        }
        return dataclasses.replace(event, **changes)

    def unfinished_end(self, text: str) -> int:
        """Where a secret that `text` may have been cut through at its end starts (len(text): none)."""
        if self._pattern is None:
            return len(text)
        for match in self._pattern.finditer(text, partial=True):
            if match.partial and match.start() < len(text):
                return match.start()
        return len(text)

    def unfinished_start(self, text: str) -> int:
        """Where a secret that `text` may have been cut through at its start ends (0: none)."""
        if self._backwards is None:
            return 0
        for match in self._backwards.finditer(text, partial=True):
            if match.partial and match.start() == 0 and match.end() > 0:
                return match.end()
        return 0

    def trim_cut(self, text: str, cut: str) -> str:
        """`text` redacted, and where the marker `cut` follows text a tool shortened, without the
        characters before it that may begin a secret the tool cut through."""
        pieces = text.split(cut)
        pieces[:-1] = [piece[: self.unfinished_end(piece)] for piece in pieces[:-1]]
        return self.redact(cut.join(pieces))

    def stream(self) -> RedactingStream:
        return RedactingStream(self)

    def _replacement(self, match: regex.Match) -> str:
        return f"[REDACTED:{self._names[match.lastgroup]}]"


class RedactingStream:
    """Redacts text that arrives in pieces: the end of a piece that could begin a secret is held
    back until the next piece shows whether it does."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.held = ""

    def feed(self, text: str) -> str:
        text = self.held + text
        cut = self.redactor.unfinished_end(text)
        self.held = text[cut:]
        return self.redactor.redact(text[:cut])

    def flush(self) -> str:
        held, self.held = self.held, ""
        return self.redactor.redact(held)


@functools.lru_cache(maxsize=32)
def _cached(secrets: tuple[tuple[str, str], ...]) -> Redactor:
    return Redactor(dict(secrets))


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    return Redactor.for_environment(env).redact(text)


def redact_data(value: Any, env: Mapping[str, str] | None = None) -> Any:
    return Redactor.for_environment(env).redact_data(value)


# -- the patterns -----------------------------------------------------------------------------


def _value_pattern(value: str) -> str:
    raw = value.encode("utf-8", "surrogateescape")
    forms = [
        *(regex.escape(form) for form in _base64_whole(raw)),
        "".join(_character(c) for c in value),
        f"(?i:{raw.hex()})",
        *(_LINE_BREAK.join(regex.escape(c) for c in core) for core in _base64_cores(raw)),
    ]
    return "|".join(f"(?:{form})" for form in forms)


def _character(c: str) -> str:
    """Every way the character may be written: as is, or escaped by one of the usual quotings."""
    data = c.encode("utf-8", "surrogateescape")
    code = ord(c)
    escape = _BACKSLASHES
    forms = [regex.escape(c), "".join(f"%(?i:{b:02x})" for b in data)]
    if c == " ":
        forms.append(r"\+")
    if c == "\\":
        forms.append(escape)
    forms.append(escape + regex.escape(c))  # \" \' \/ ...
    if code < 0x10000:
        forms.append(f"{escape}u(?i:{code:04x})")
    else:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(f"{escape}u(?i:{high:04x}){escape}u(?i:{low:04x})")
    forms.append(f"{escape}U(?i:{code:08x})")
    if code < 0x100:
        forms.append(f"{escape}x(?i:{code:02x})")
    forms.append("".join(f"{escape}x(?i:{b:02x})" for b in data))  # Python's repr of bytes
    forms.append("".join(f"{escape}{b:03o}" for b in data))  # printf %q, $'...'
    if c in _NAMED_ESCAPES:
        forms.append(escape + _NAMED_ESCAPES[c])
    return "(?:" + "|".join(dict.fromkeys(forms)) + ")"


def _base64_whole(raw: bytes) -> list[str]:
    """The encodings of the value on its own, padding included (longest alternatives go first)."""
    forms = []
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode()
        forms += [encoded, encoded.rstrip("=")]
    return sorted(set(forms), key=len, reverse=True)


def _base64_cores(raw: bytes) -> list[str]:
    """The characters that depend on the value's bits alone, for each of the three alignments it
    can have inside a longer encoded text."""
    cores = []
    for offset in range(3):
        first = -(-8 * offset // 6)  # the first character made of the value's bits only
        last = 8 * (offset + len(raw)) // 6  # one past the last such character
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw + b"\0\0").decode()
            cores.append(encoded[first:last])
    return list(dict.fromkeys(cores))
