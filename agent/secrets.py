"""Keeps credentials out of everything that leaves the process.

Which values are secret: those of environment variables whose names look like credentials
(CREDENTIAL_NAME) and are at least MIN_SECRET_LENGTH characters long, plus whatever a session adds
(the backend's own API key, whatever its variable is called). Short values are left alone:
redacting "1" or "true" everywhere would wreck ordinary text and protect nothing.

One `Redactor` per session replaces each of them with `[REDACTED:NAME]` in tool results, in every
event (so stdout in every format, the session file, eval trajectories and the terminal UI), in the
result's diff and in refusal messages. It looks for each secret in these forms, as literal strings
(fast: `str.find`, however many secrets the environment holds):
- as written; escaped once or twice over by JSON (ASCII or not, `\\/` or `/`, upper- or
  lower-case hex) and Python's repr and ascii (`print(os.environ)` doubles a backslash; JSON of
  that doubles it again); Python's repr of its UTF-8 bytes;
- URL-encoded: every character, or all but the unreserved ones, `/`, or JavaScript's
  encodeURIComponent set; `+` for spaces or not; upper- or lower-case hex;
- the hex of its UTF-8 bytes, either case, also split by spaces, colons or line breaks;
- base64, standard and URL-safe, in all three alignments (inside a longer encoded text only the
  characters made of the secret's bits alone are its own), padded or not, wrapped across lines.

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
import json
import os
import re
import string
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

CREDENTIAL_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MIN_SECRET_LENGTH = 6
MULTI_LINE_PART = 16  # lines of a multi-line secret at least this long are secrets of their own
# Characters left out before looking for a form: base64 and hex tools wrap and space their output.
_UNWRAPPED = "\r\n"
_PACKED = string.whitespace + ":"


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
        for value, name in list(self.secrets.items()):
            # A multi-line secret (a PEM key) is shown line by line too (read_file numbers each line;
            # a window of lines shows some): each line that looks secret on its own is one.
            for line in value.splitlines():
                if len(line.strip()) >= MULTI_LINE_PART and not any(c.isspace() for c in line.strip()):
                    self.secrets.setdefault(line.strip(), name)
        # {characters left out: {form: name}}; longer values first, so they name what they contain.
        self._forms: dict[str, dict[str, str]] = {"": {}, _UNWRAPPED: {}, _PACKED: {}}
        for value in sorted(self.secrets, key=len, reverse=True):
            plain, wrapped, spaced = _forms(value)
            for drop, forms in (("", plain), (_UNWRAPPED, wrapped), (_PACKED, spaced)):
                for form in forms:
                    self._forms[drop].setdefault(form, self.secrets[value])

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
        if not self.secrets or not text:
            return text
        spans = self._spans(text)
        if not spans:
            return text
        out, position = [], 0
        for start, end, name in spans:
            out += [text[position:start], f"[REDACTED:{name}]"]
            position = end
        out.append(text[position:])
        return "".join(out)

    def redact_data(self, value: Any) -> Any:
        """`redact` applied to every string inside nested dicts (keys too), lists and events."""
        if isinstance(value, str):
            return self.redact(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self.redact_event(value)  # a subagent's event inside its parent's
        if isinstance(value, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_data(v) for v in value]
        return value

    def redact_event(self, event: Any) -> Any:
        """A copy of a dataclass event with every field redacted."""
        if not self.secrets or not dataclasses.is_dataclass(event):
            return event
        changes = {
            f.name: self.redact_data(getattr(event, f.name)) for f in dataclasses.fields(event) if f.init
        }
        return dataclasses.replace(event, **changes)

    def unfinished_end(self, text: str) -> int:
        """Where a secret that `text` may have been cut through at its end starts (len(text): none).

        Never inside a secret that is whole in `text`: that one is redacted whole."""
        return min(self._cut_candidates(text, at_end=True), default=len(text))

    def unfinished_start(self, text: str) -> int:
        """Where a secret that `text` may have been cut through at its start ends (0: none)."""
        return max(self._cut_candidates(text, at_end=False), default=0)

    def trim_cut(self, text: str, cut: str) -> str:
        """`text` redacted, and where the marker `cut` follows text a tool shortened, without the
        characters before it that may begin a secret the tool cut through."""
        pieces = text.split(cut)
        pieces[:-1] = [piece[: self.unfinished_end(piece)] for piece in pieces[:-1]]
        return self.redact(cut.join(pieces))

    def stream(self) -> RedactingStream:
        return RedactingStream(self)

    # -- finding forms ---------------------------------------------------------------------------

    def _spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, name) of every form found, overlapping ones merged."""
        found = []
        for drop, forms in self._forms.items():
            view, position_of = _view(text, drop)
            for form, name in forms.items():
                start = view.find(form)
                while start != -1:
                    found.append((position_of(start), position_of(start + len(form) - 1) + 1, name))
                    start = view.find(form, start + 1)
        found.sort(key=lambda span: (span[0], -span[1]))
        merged: list[tuple[int, int, str]] = []
        for start, end, name in found:
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]), merged[-1][2])
            else:
                merged.append((start, end, name))
        return merged

    def _cut_candidates(self, text: str, *, at_end: bool) -> list[int]:
        """Positions where `text` may have been cut through a form: the start of a proper prefix of
        one that ends `text` (at_end), or the end of a proper suffix of one that starts it."""
        if not self.secrets or not text:
            return []
        candidates = []
        for drop, forms in self._forms.items():
            view, position_of = _view(text, drop)
            if not view:
                continue
            for form in forms:
                if at_end:  # a proper prefix of the form ends the view: it ends in the view's last char
                    j = form.rfind(view[-1], 0, len(form) - 1)
                    while j != -1:
                        if view.endswith(form[: j + 1]):
                            candidates.append(position_of(len(view) - j - 1))
                        j = form.rfind(view[-1], 0, j)
                else:  # a proper suffix of the form opens the view: it starts with the view's first char
                    j = form.find(view[0], 1)
                    while j != -1:
                        if view.startswith(form[j:]):
                            candidates.append(position_of(len(form) - j - 1) + 1)
                        j = form.find(view[0], j + 1)
        whole = self._spans(text)
        return [c for c in candidates if not any(start < c < end for start, end, _ in whole)]


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


# -- the forms ------------------------------------------------------------------------------------

# Each writes a string with its quotes: JSON (ASCII or not), Python's repr and ascii.
_QUOTERS: list[Callable[[str], str]] = [
    lambda s: json.dumps(s, ensure_ascii=False),
    json.dumps,
    repr,
    ascii,
]
_JS_URI_SAFE = "-_.!~*'()"


def _forms(value: str) -> tuple[set[str], set[str], set[str]]:
    """(forms as they appear, base64 forms (line breaks left out), hex forms (spacing left out))."""
    raw = value.encode("utf-8", "surrogateescape")
    quoted = {quote(value) for quote in _QUOTERS}
    once = {text[1:-1] for text in quoted}
    core = {value, *once, *(quote(text)[1:-1] for text in once for quote in _QUOTERS)}
    # Quoted twice, the inner quotes can change how the outer quoting escapes the value ("x'" in
    # repr of repr is "x\\'"): then the form must include them.
    with_quotes = {quote(text)[1:-1] for text in quoted for quote in _QUOTERS}
    plain = core | {text for text in with_quotes if not any(form in text for form in core)}
    plain.add(repr(raw)[2:-1])
    plain |= {form.replace("/", "\\/") for form in plain}  # JSON may escape the slash
    plain |= {re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group()[2:].upper(), form) for form in plain}
    url = {
        urllib.parse.quote(raw, safe=""),
        urllib.parse.quote(raw),
        urllib.parse.quote(raw, safe=_JS_URI_SAFE),
        urllib.parse.quote_plus(raw),
        urllib.parse.quote_plus(raw, safe=_JS_URI_SAFE),
        "".join(f"%{byte:02X}" for byte in raw),
    }
    plain |= url | {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in url}
    wrapped = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode()
        wrapped |= {encoded, encoded.rstrip("=")}
        for offset in range(3):  # inside a longer text: only the characters of the value's own bits
            first, last = -(-8 * offset // 6), 8 * (offset + len(raw)) // 6
            wrapped.add(encode(b"\0" * offset + raw + b"\0\0").decode()[first:last])
    return plain, wrapped, {raw.hex(), raw.hex().upper()}


def _view(text: str, drop: str) -> tuple[str, Callable[[int], int]]:
    """`text` without the characters in `drop`, and the map from its positions back to `text`'s."""
    if not drop or not any(c in text for c in drop):
        return text, lambda i: i
    kept = [i for i, c in enumerate(text) if c not in drop]
    return "".join(text[i] for i in kept), kept.__getitem__
