"""The synthetic suite: small repositories of our own, each with a bug, its fix and tests.

Commits have fixed authors and dates, so every test run makes the same commit ids, the same
source trees and so the same (cached) instance images. Each repository's history goes on past the
base commit with the fixes, so a task whose instance leaked history could read its own answer.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

SUITE_DIR = Path(__file__).resolve().parents[2] / "evals" / "suites" / "pypi-fixes"


def shared_environment() -> dict[str, Any]:
    """The pypi-fixes suite's environment: sharing it means one env image serves every test."""
    first = sorted(SUITE_DIR.glob("*.json"))[0]
    return json.loads(first.read_text())["environment"]


def git(repo: Path, *args: str, date: str = "2024-01-01T00:00:00+0000") -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "mmx",
        "GIT_AUTHOR_EMAIL": "mmx@localhost",
        "GIT_COMMITTER_NAME": "mmx",
        "GIT_COMMITTER_EMAIL": "mmx@localhost",
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return result.stdout


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit(repo: Path, message: str, date: str) -> str:
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", message, date=date)
    return git(repo, "rev-parse", "HEAD").strip()


def diff(repo: Path, old: str, new: str, *paths: str) -> str:
    return git(repo, "diff", "--no-color", old, new, "--", *paths)


# -- textkit: a src-layout package whose .gitignore hides top-level *.py files ---------------------

TEXTKIT_BASE = {
    ".gitignore": "/*.py\n*.egg-info/\n__pycache__/\n",
    "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "textkit"\nversion = "0.1"\n\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n\n'
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
    ),
    "src/textkit/__init__.py": "from textkit.words import slugify, title_case\n",
    "src/textkit/words.py": (
        "import re\n\n\n"
        "def slugify(text):\n"
        '    """Lower-case words joined by single dashes."""\n'
        '    words = re.split(r"[^a-z0-9]", text.lower().replace("\'", ""))\n'
        '    return "-".join(words).strip("-")\n\n\n'
        "SMALL_WORDS = {'a', 'an', 'and', 'of', 'the'}\n\n\n"
        "def title_case(text):\n"
        '    """Capitalise each word except small words that are not first."""\n'
        "    words = text.split()\n"
        '    return " ".join(w.capitalize() for w in words)\n'
    ),
    "tests/conftest.py": "import pytest\n\n\n@pytest.fixture\ndef sample():\n    return 'Hello World'\n",
    "tests/test_words.py": (
        "from textkit import slugify, title_case\n\n\n"
        "def test_slugify_basic(sample):\n    assert slugify(sample) == 'hello-world'\n\n\n"
        "def test_title_case_basic():\n    assert title_case('hello world') == 'Hello World'\n"
    ),
}
SLUGIFY_FIX = TEXTKIT_BASE["src/textkit/words.py"].replace(
    '    return "-".join(words).strip("-")\n', '    return "-".join(w for w in words if w)\n'
)
SLUGIFY_TESTS = TEXTKIT_BASE["tests/test_words.py"] + (
    "\n\nimport pytest\n\n\n"
    "def test_slugify_collapses_separators():\n    assert slugify('a -- b') == 'a-b'\n\n\n"
    # Ids with two spaces, a quote and an escaped newline: they must reach pytest intact.
    "@pytest.mark.parametrize('text,expected', [('a  b', 'a-b'), (\"it's\\n\\nhere\", 'its-here')])\n"
    "def test_slugify_examples(text, expected):\n    assert slugify(text) == expected\n"
)
TITLE_FIX = TEXTKIT_BASE["src/textkit/words.py"].replace(
    '    return " ".join(w.capitalize() for w in words)\n',
    '    return " ".join(w if i and w in SMALL_WORDS else w.capitalize() for i, w in enumerate(words))\n',
)
TITLE_TESTS = TEXTKIT_BASE["tests/test_words.py"] + (
    "\n\ndef test_title_case_small_words():\n    assert title_case('the lord of the rings') == 'The Lord of the Rings'\n"
)

# -- calc: a flat module, no install step, tests run with `python -m pytest` -------------------------

CALC_BASE = {
    "calc.py": "def add(a, b):\n    return a + b\n\n\ndef divide(a, b):\n    return a // b\n",
    "tests/test_calc.py": "from calc import add, divide\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}
CALC_FIX = {"calc.py": CALC_BASE["calc.py"].replace("return a // b", "return a / b")}
CALC_TESTS = (
    CALC_BASE["tests/test_calc.py"] + "\n\ndef test_divide_returns_float():\n    assert divide(7, 2) == 3.5\n"
)


def build_repositories(repos_dir: Path) -> dict[str, Any]:
    """Creates the repositories under repos_dir (owner__name); returns commit ids and patches."""
    info: dict[str, Any] = {}
    textkit = repos_dir / "mmx-evals__textkit"
    textkit.mkdir(parents=True)
    git(textkit, "init", "-q", "-b", "main")
    write(textkit, TEXTKIT_BASE)
    base = commit(textkit, "textkit 0.1", "2024-01-01T00:00:00+0000")
    write(textkit, {"src/textkit/words.py": SLUGIFY_FIX, "tests/test_words.py": SLUGIFY_TESTS})
    slug_fix = commit(textkit, "slugify: collapse separators", "2024-01-02T00:00:00+0000")
    git(textkit, "checkout", "-q", "-b", "title-fix", base)
    write(textkit, {"src/textkit/words.py": TITLE_FIX, "tests/test_words.py": TITLE_TESTS})
    title_fix = commit(textkit, "title_case: keep small words", "2024-01-03T00:00:00+0000")
    git(textkit, "checkout", "-q", "main")
    git(textkit, "tag", "v0.2", slug_fix)
    info["textkit"] = {
        "base": base,
        "future": [slug_fix, title_fix],
        "slug_patch": diff(textkit, base, slug_fix, "src"),
        "slug_test_patch": diff(textkit, base, slug_fix, "tests"),
        "title_patch": diff(textkit, base, title_fix, "src"),
        "title_test_patch": diff(textkit, base, title_fix, "tests"),
    }
    calc = repos_dir / "mmx-evals__calc"
    calc.mkdir()
    git(calc, "init", "-q", "-b", "main")
    write(calc, CALC_BASE)
    calc_base = commit(calc, "calc", "2024-01-01T00:00:00+0000")
    write(calc, {"calc.py": CALC_FIX["calc.py"], "tests/test_calc.py": CALC_TESTS})
    calc_fix = commit(calc, "divide: true division", "2024-01-02T00:00:00+0000")
    info["calc"] = {
        "base": calc_base,
        "future": [calc_fix],
        "patch": diff(calc, calc_base, calc_fix, "calc.py"),
        "test_patch": diff(calc, calc_base, calc_fix, "tests"),
    }
    return info


TASK_IDS = ["mmx-evals__textkit-1", "mmx-evals__textkit-2", "mmx-evals__calc-1"]
SLUG_EXAMPLES = [
    "tests/test_words.py::test_slugify_examples[a  b-a-b]",
    "tests/test_words.py::test_slugify_examples[it's\\n\\nhere-its-here]",
]


def tasks(info: dict[str, Any]) -> list[dict[str, Any]]:
    env = shared_environment()
    textkit_env = {**env, "install": ["pip install --no-build-isolation --no-deps -e ."]}
    calc_env = {**env, "install": [], "test_cmd": "python -m pytest"}
    textkit, calc = info["textkit"], info["calc"]
    return [
        {
            "instance_id": "mmx-evals__textkit-1",
            "repo": "mmx-evals/textkit",
            "base_commit": textkit["base"],
            "problem_statement": "slugify('a -- b') gives 'a---b': runs of separators must become one dash.",
            "patch": textkit["slug_patch"],
            "test_patch": textkit["slug_test_patch"],
            "FAIL_TO_PASS": json.dumps(
                ["tests/test_words.py::test_slugify_collapses_separators", *SLUG_EXAMPLES]
            ),
            "PASS_TO_PASS": json.dumps(
                ["tests/test_words.py::test_slugify_basic", "tests/test_words.py::test_title_case_basic"]
            ),
            "environment": textkit_env,
        },
        {
            "instance_id": "mmx-evals__textkit-2",
            "repo": "mmx-evals/textkit",
            "base_commit": textkit["base"],
            "problem_statement": "title_case capitalises small words such as 'of' and 'the' in the middle of a title.",
            "patch": textkit["title_patch"],
            "test_patch": textkit["title_test_patch"],
            "FAIL_TO_PASS": ["tests/test_words.py::test_title_case_small_words"],
            "PASS_TO_PASS": [
                "tests/test_words.py::test_slugify_basic",
                "tests/test_words.py::test_title_case_basic",
            ],
            "environment": textkit_env,
        },
        {
            "instance_id": "mmx-evals__calc-1",
            "repo": "mmx-evals/calc",
            "base_commit": calc["base"],
            "problem_statement": "divide(7, 2) returns 3; it should return 3.5.",
            "patch": calc["patch"],
            "test_patch": calc["test_patch"],
            "FAIL_TO_PASS": ["tests/test_calc.py::test_divide_returns_float"],
            "PASS_TO_PASS": ["tests/test_calc.py::test_add"],
            "environment": calc_env,
        },
    ]


def write_suite(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path
