"""What a source tree says it needs to build and run, read from its files (nothing of it is run).

The official harness installs a repository online, so its `pip install -e .` fetches the build
backend and the dependencies. Offline, both must already be in the env image's wheelhouse: they
are read here from pyproject.toml ([build-system] requires, [project] dependencies), else from
the metadata a source distribution ships (PKG-INFO's Requires-Dist, *.egg-info/requires.txt).
"""

from __future__ import annotations

import email.parser
import tomllib
from pathlib import Path

SETUP_PY_BUILD = ["setuptools", "wheel"]  # what a setup.py-only project builds with


def declared_requirements(tree: Path) -> tuple[list[str], list[str]]:
    """(requirements to add to the wheelhouse, notes on what could not be read)."""
    notes: list[str] = []
    build: list[str] = []
    runtime: list[str] | None = None
    pyproject = tree / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            notes.append(f"pyproject.toml is unreadable ({e}): its requirements are not installed")
            data = {}
        build = [str(r) for r in (data.get("build-system") or {}).get("requires") or []]
        project = data.get("project") or {}
        if "dependencies" in project and "dependencies" not in (project.get("dynamic") or []):
            runtime = [str(r) for r in project["dependencies"]]
    if not build and (tree / "setup.py").is_file():
        build = list(SETUP_PY_BUILD)
    if any(r.lower().startswith("setuptools") for r in build) and not any(
        r.startswith("wheel") for r in build
    ):
        build.append("wheel")  # setuptools before 70.1 asks for it at build time, which isolation would fetch
    if runtime is None:
        runtime = _sdist_metadata_requirements(tree)
    if runtime is None:
        runtime = []
        if (tree / "setup.py").is_file() or (tree / "setup.cfg").is_file():
            notes.append(
                "the repository's dependencies are not declared statically (setup.py): only the "
                "spec's packages are installed"
            )
    return list(dict.fromkeys([*build, *runtime])), notes


def _sdist_metadata_requirements(tree: Path) -> list[str] | None:
    pkg_info = tree / "PKG-INFO"
    if pkg_info.is_file():
        message = email.parser.Parser().parsestr(pkg_info.read_text(encoding="utf-8", errors="replace"))
        requires = message.get_all("Requires-Dist")
        if requires:
            return [r for r in requires if "extra ==" not in r.replace("extra==", "extra ==")]
    for requires_txt in sorted(tree.glob("*.egg-info/requires.txt")) + sorted(
        tree.glob("src/*.egg-info/requires.txt")
    ):
        lines = []
        for line in requires_txt.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("["):
                break  # extras and markers follow: only the unconditional requirements
            if line.strip():
                lines.append(line.strip())
        return lines
    return None
