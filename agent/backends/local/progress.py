"""One-line notices on stderr for the local model's slow steps (kernel builds, compiling, loading).

stdout stays the command's own output (generated text, JSON results); these lines are for the person
watching, as pip's are.
"""

from __future__ import annotations

import sys


def notice(text: str) -> None:
    print(f"[local] {text}", file=sys.stderr, flush=True)
