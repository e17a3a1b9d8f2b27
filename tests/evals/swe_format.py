"""SWE-bench-format instances (no `environment`: swebench's specs give it) that the tests build offline.

- pallets/flask version 2.3: Flask 2.3.2's source distribution from PyPI is the repository (a git
  repository made from it in --repos-dir layout); the gold and test patches are small changes of
  our own to it, made as diffs at test time (no third-party code is stored here).
- django/django version 5.0: a small project of our own laid out like Django (tests/runtests.py
  printing unittest's verbose lines as Django's runner does, tests/test_sqlite.py settings), graded
  by swebench's Django log parser.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from evals.derive import diff_between
from evals.sources import sdist_tree
from tests.evals import synthetic

FLASK_SDIST = "Flask==2.3.2"
FLASK_ID = "pallets__flask-90001"
FLASK_F2P = ["tests/test_config.py::test_get_namespace_without_its_separator"]
FLASK_P2P = [
    "tests/test_config.py::test_get_namespace",
    "tests/test_config.py::test_config_from_mapping",
    "tests/test_config.py::test_config_from_file_json",
]
GET_NAMESPACE_LOOP = (
    "        rv = {}\n        for k, v in self.items():\n            if not k.startswith(namespace):"
)
NAMESPACE_FIX = '        if not namespace.endswith("_"):\n            namespace += "_"\n'
NEW_FLASK_TEST = """

def test_get_namespace_without_its_separator():
    app = flask.Flask(__name__)
    app.config["IMAGE_STORE_TYPE"] = "fs"
    app.config["IMAGE_STORE_PATH"] = "/var/app/images"
    got = app.config.get_namespace("IMAGE_STORE")
    assert got == {"type": "fs", "path": "/var/app/images"}
"""

DJANGO_ID = "django__django-90001"
DJANGO_F2P = ["test_collapses_dashes (text_utils.tests.SlugTests.test_collapses_dashes)"]
DJANGO_P2P = ["test_lower_case (text_utils.tests.SlugTests.test_lower_case)"]
RUNTESTS = '''#!/usr/bin/env python3
"""Runs test modules by label and prints unittest's verbose lines, as Django's tests/runtests.py does."""
import argparse
import os
import sys
import unittest

parser = argparse.ArgumentParser()
parser.add_argument("labels", nargs="*")
parser.add_argument("--verbosity", type=int, default=1)
parser.add_argument("--settings")
parser.add_argument("--parallel")
args = parser.parse_args()
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.dirname(here)]
if args.settings:
    __import__(args.settings)
print("Testing against minidjango installed in %r, Python in %r" % (os.path.dirname(here), sys.prefix))
suite = unittest.defaultTestLoader.loadTestsFromNames(args.labels)
result = unittest.TextTestRunner(stream=sys.stdout, verbosity=args.verbosity).run(suite)
sys.exit(not result.wasSuccessful())
'''
DJANGO_BASE = {
    "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "minidjango"\nversion = "5.0"\ndependencies = []\n\n'
        '[tool.setuptools]\npackages = ["minidjango"]\n'
    ),
    "setup.py": "from setuptools import setup\n\nsetup()\n",  # older Django specs run `setup.py install`
    "minidjango/__init__.py": "",
    "minidjango/text.py": (
        "def slugify(text):\n"
        '    """Lower-case words joined by dashes."""\n'
        '    return "-".join(text.lower().split(" "))\n'
    ),
    "tests/runtests.py": RUNTESTS,
    "tests/test_sqlite.py": 'DATABASES = {"default": {"ENGINE": "sqlite3"}}\n',
    "tests/text_utils/__init__.py": "",
    "tests/text_utils/tests.py": (
        "import unittest\n\nfrom minidjango.text import slugify\n\n\n"
        "class SlugTests(unittest.TestCase):\n"
        "    def test_lower_case(self):\n"
        '        self.assertEqual(slugify("Hello World"), "hello-world")\n'
    ),
}
DJANGO_FIX = '    return "-".join(text.lower().split())\n'
DJANGO_NEW_TEST = (
    "\n    def test_collapses_dashes(self):\n"
    '        self.assertEqual(slugify("Hello   World"), "hello-world")\n'
)


def patch_of(base: Path, changes: dict[str, str | None]) -> str:
    """A git patch taking `base` to `base` with `changes` (None deletes the file)."""
    with tempfile.TemporaryDirectory(prefix="swe-format-") as scratch:
        new_root = Path(scratch)
        for name, text in changes.items():
            if text is not None:
                (new_root / name).parent.mkdir(parents=True, exist_ok=True)
                (new_root / name).write_text(text)
        return diff_between(base, new_root, list(changes))


def _git_repository(tree: Path, path: Path) -> str:
    """A git repository at `path` holding `tree` as one commit (and a later one: history past the base)."""
    shutil.copytree(tree, path, symlinks=True)
    synthetic.git(path, "init", "-q")
    synthetic.git(path, "add", "-A", "-f")
    synthetic.git(path, "commit", "-q", "-m", "base")
    base = synthetic.git(path, "rev-parse", "HEAD").strip()
    (path / "FUTURE.txt").write_text("after the base\n")
    synthetic.git(path, "add", "-A")
    synthetic.git(path, "commit", "-q", "-m", "later")
    return base


def flask_instance(repos_dir: Path) -> tuple[dict[str, Any], Path]:
    """(the instance record, the base tree) for pallets/flask 2.3, from Flask 2.3.2's sdist."""
    tree = sdist_tree(FLASK_SDIST).path
    base = _git_repository(tree, repos_dir / "pallets__flask")
    config = (tree / "src/flask/config.py").read_text()
    assert config.count(GET_NAMESPACE_LOOP) == 1, "Flask 2.3.2's get_namespace changed shape"
    tests = (tree / "tests/test_config.py").read_text()
    record = {
        "instance_id": FLASK_ID,
        "repo": "pallets/flask",
        "version": "2.3",
        "base_commit": base,
        "environment_setup_commit": base,
        "problem_statement": "Config.get_namespace('IMAGE_STORE') keeps the underscore in its keys "
        "('_type'); it should work like get_namespace('IMAGE_STORE_').",
        "patch": patch_of(
            tree,
            {"src/flask/config.py": config.replace(GET_NAMESPACE_LOOP, NAMESPACE_FIX + GET_NAMESPACE_LOOP)},
        ),
        "test_patch": patch_of(tree, {"tests/test_config.py": tests + NEW_FLASK_TEST}),
        "FAIL_TO_PASS": json.dumps(FLASK_F2P),  # as the datasets store them
        "PASS_TO_PASS": json.dumps(FLASK_P2P),
        "created_at": "2023-08-21T00:00:00Z",
        "hints_text": "",
    }
    return record, tree


def django_style_instance(repos_dir: Path, scratch: Path) -> tuple[dict[str, Any], Path]:
    """(the instance record, the base tree) for a django/django 5.0-style project of our own."""
    tree = scratch / "minidjango-base"
    synthetic.write(tree, DJANGO_BASE)
    (tree / "tests/runtests.py").chmod(0o755)
    base = _git_repository(tree, repos_dir / "django__django")
    text = DJANGO_BASE["minidjango/text.py"]
    record = {
        "instance_id": DJANGO_ID,
        "repo": "django/django",
        "version": "5.0",
        "base_commit": base,
        "problem_statement": "slugify('Hello   World') gives 'hello---world'; repeated spaces should "
        "make one dash.",
        "patch": patch_of(
            tree, {"minidjango/text.py": text.replace(text.splitlines()[-1] + "\n", DJANGO_FIX)}
        ),
        "test_patch": patch_of(
            tree, {"tests/text_utils/tests.py": DJANGO_BASE["tests/text_utils/tests.py"] + DJANGO_NEW_TEST}
        ),
        "FAIL_TO_PASS": DJANGO_F2P,
        "PASS_TO_PASS": DJANGO_P2P,
    }
    return record, tree
