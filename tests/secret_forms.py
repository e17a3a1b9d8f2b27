"""One check for every output stream: does a secret appear in it, in any form the redactor promises
to catch (docs/safety.md, "Secret redaction")?

Written apart from agent/secrets.py on purpose: the forms are spelled out by the standard
library's own encoders, so a redactor that missed one would be caught here.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

# A secret with every character that quoting treats specially: \, ", ', /, +, =, %, non-ASCII.
SECRET = "mmxK3y\\\"Q'é€/+=%-Zp9-0123456789-tail"


def forms(secret: str = SECRET) -> dict[str, str]:
    """Every form of `secret` that must not appear, by name."""
    raw = secret.encode()
    found = {
        "raw": secret,
        "json": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json ascii": json.dumps(secret)[1:-1],
        "json of json": json.dumps(json.dumps(secret))[1:-1],
        "repr": repr(secret)[1:-1],
        "ascii": ascii(secret)[1:-1],
        "repr of repr": repr(repr(secret))[1:-1],
        "repr of a dict (print(os.environ))": repr({"K": secret}).split(": ", 1)[1][1:-2],
        "json of repr": json.dumps(repr(secret))[2:-2],
        "bytes repr": repr(raw)[2:-1],
        "url": urllib.parse.quote(secret, safe=""),
        "url, lower-case escapes": "%".join(
            part[:2].lower() + part[2:] if i else part
            for i, part in enumerate(urllib.parse.quote(secret, safe="").split("%"))
        ),
        "url, form encoding": urllib.parse.quote_plus(secret),
        "url, path-safe": urllib.parse.quote(secret),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }
    for alignment in range(3):
        for name, encode in (("base64", base64.b64encode), ("urlsafe base64", base64.urlsafe_b64encode)):
            # Only the characters made of the secret's bits alone: the rest depend on its neighbours.
            encoded = encode(b"\0" * alignment + raw + b"\0\0").decode()
            first, last = -(-8 * alignment // 6), 8 * (alignment + len(raw)) // 6
            found[f"{name}, alignment {alignment}"] = encoded[first:last]
    for name, encode in (("base64", base64.b64encode), ("urlsafe base64", base64.urlsafe_b64encode)):
        found[f"{name}, padded"] = encode(raw).decode()
    return found


def all_forms_text(secret: str = SECRET) -> str:
    """A text with every form, one per line; the base64 ones also inside longer encoded texts and
    wrapped (as `base64` prints them), the hex ones also spaced and wrapped (`od`, `xxd -p`)."""
    raw = secret.encode()
    lines = list(forms(secret).values())
    for prefix in (b"", b"x", b"xy"):
        lines.append(base64.b64encode(prefix + raw + b"\n").decode())
        lines.append(base64.urlsafe_b64encode(prefix + raw).decode().rstrip("="))
        lines.append(base64.encodebytes(b"-" * 40 + prefix + raw * 2).decode())  # wrapped at 76
    lines.append(" ".join(f"{byte:02x}" for byte in raw))
    hexed = (b"-" * 7 + raw).hex()
    lines.append("\n".join(hexed[i : i + 60] for i in range(0, len(hexed), 60)))
    return "\n".join(lines) + "\n"


def leaks(text: str, secret: str = SECRET, *, prefix: int = 6) -> list[str]:
    """The forms of `secret` found in `text` (base64 also across line breaks, hex also across
    spacing), and whether its first or last `prefix` characters are there (a secret cut in two
    must not show either piece)."""
    unwrapped = text.replace("\r", "").replace("\n", "")
    packed = "".join(text.split()).replace(":", "")
    found = [
        name
        for name, form in forms(secret).items()
        if form in text
        or ("base64" in name and form in unwrapped)
        or (name.lower() == "hex" and form in packed)
    ]
    if secret[:prefix] in text:
        found.append(f"its first {prefix} characters")
    if secret[-prefix:] in text:
        found.append(f"its last {prefix} characters")
    return found


def leaks_in_files(directory: Path, secret: str = SECRET) -> dict[str, list[str]]:
    """{file: leaks} for every file under `directory` that shows the secret."""
    found = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        hits = leaks(path.read_bytes().decode("utf-8", "replace"), secret)
        if hits:
            found[str(path)] = hits
    return found
