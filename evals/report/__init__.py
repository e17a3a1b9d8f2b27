"""`mmx-agent eval report`: eval outputs as one self-contained HTML page and Markdown summary tables.

load.py reads OUTPUT directories, stats.py computes the numbers (rates, distributions, the paired
comparison), charts.py draws with matplotlib, html.py and markdown.py render. Needs the `report`
extra (matplotlib, Jinja2, Pygments); `missing_dependencies` says what is absent.
"""

from __future__ import annotations

import importlib

REQUIRED = ("matplotlib", "numpy", "jinja2", "pygments")


def missing_dependencies() -> list[str]:
    missing = []
    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing
