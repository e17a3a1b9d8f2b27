"""Runs inside a grading container: save, then restore, every file that can change how tests run.

    python3 -I pristine.py save    ROOT STORE [EXTRA_PATH ...]
    python3 -I pristine.py restore ROOT STORE [EXTRA_PATH ...]

`save` (on the pristine tree, before the candidate patch) copies the test-influencing files into
STORE; `restore` (after the patch) puts each of them back byte for byte and deletes every
test-influencing path the patch added, then drops all __pycache__ directories (a forged cached
module would otherwise be run instead of its source). It prints a JSON summary.

Test-influencing: any path with a component that is a test directory (tests/, test/, and testing/
at the top: Django's tests/ with its runtests.py and settings, sympy's sympy/**/tests/), a test
module (test_*.py, *_test.py), a conftest.py, a pytest/tox/setup.cfg/pyproject configuration, a
test runner (runtests.py anywhere: sympy's lives in sympy/testing/), a *.pth file,
sitecustomize/usercustomize, or package metadata (*.egg-info, *.dist-info: entry points register
pytest plugins); plus EXTRA_PATHs (the test patch's files and the test command's own scripts,
such as sympy's bin/test).
The walk is of the file system, not git, so files a .gitignore hides are caught as well.

Standalone on purpose: the source is copied into the container and run with the image's own
python3 (-I: no environment variables, no user site, no current directory on sys.path), so
nothing the candidate patch adds can be imported by it. Sticks to Python 3.7.
"""

import fnmatch
import json
import os
import shutil
import stat
import sys

TEST_DIRS = {"tests", "test"}
TOP_LEVEL_TEST_DIRS = {"testing"}
CONFIG_FILES = {
    "conftest.py",
    "pytest.ini",
    ".pytest.ini",
    "pytest.toml",
    ".pytest.toml",
    "tox.ini",
    "setup.cfg",
    "pyproject.toml",
    "sitecustomize.py",
    "usercustomize.py",
    "runtests.py",
}
PATTERNS = ("test_*.py", "*_test.py", "*.pth", "*.egg-info", "*.dist-info")
MANIFEST = "manifest.json"


def influences_tests(relative, extras):
    if relative in extras:
        return True
    parts = relative.split("/")
    if parts[0] in TOP_LEVEL_TEST_DIRS and len(parts) > 1:
        return True
    for index, part in enumerate(parts):
        if part in TEST_DIRS and index < len(parts) - 1:
            return True
        if part in CONFIG_FILES or any(fnmatch.fnmatchcase(part, p) for p in PATTERNS):
            return True
    return False


def walk(root):
    """Relative paths of every file and symlink under root (directories are implied), .git left out."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        relative_dir = os.path.relpath(directory, root)
        if relative_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            if name in dirnames and not os.path.islink(path):
                continue
            found.append(os.path.normpath(os.path.join(relative_dir, name)).replace(os.sep, "/"))
    return found


def influencing(root, extras):
    return sorted(p for p in walk(root) if influences_tests(p, extras))


def remove(path):
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def make_real_parents(root, relative):
    """Every directory above root/relative exists and is a real directory (not a symlink or file)."""
    current = root
    for part in relative.split("/")[:-1]:
        current = os.path.join(current, part)
        if os.path.lexists(current) and (os.path.islink(current) or not os.path.isdir(current)):
            os.unlink(current)
        if not os.path.lexists(current):
            os.mkdir(current)


def copy_entry(source, target):
    if os.path.islink(source):
        os.symlink(os.readlink(source), target)
    else:
        shutil.copy2(source, target)


def save(root, store, extras):
    paths = influencing(root, extras)
    for relative in paths:
        target = os.path.join(store, "files", relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        copy_entry(os.path.join(root, relative), target)
    with open(os.path.join(store, MANIFEST), "w") as f:
        json.dump(paths, f)
    return {"saved": len(paths)}


def restore(root, store, extras):
    with open(os.path.join(store, MANIFEST)) as f:
        pristine = json.load(f)
    pristine_set = set(pristine)
    removed, restored = [], []
    for relative in influencing(root, extras):
        if relative not in pristine_set:
            remove(os.path.join(root, relative))
            removed.append(relative)
    for relative in pristine:
        target = os.path.join(root, relative)
        source = os.path.join(store, "files", relative)
        make_real_parents(root, relative)
        if os.path.lexists(target):
            if not os.path.islink(target) and os.path.isfile(target) and _same(source, target):
                continue
            remove(target)
        copy_entry(source, target)
        restored.append(relative)
    caches = 0
    for directory, dirnames, _ in os.walk(root):
        if os.path.relpath(directory, root) == ".":
            dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [d for d in dirnames if d == "__pycache__"]:
            shutil.rmtree(os.path.join(directory, name))
            dirnames.remove(name)
            caches += 1
    return {"removed": removed, "restored": restored, "pycache_dirs_dropped": caches}


def _same(a, b):
    if os.path.islink(a):
        return False
    sa, sb = os.stat(a), os.stat(b)
    if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode) or sa.st_size != sb.st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def main(argv):
    if len(argv) < 3 or argv[0] not in ("save", "restore"):
        sys.stderr.write(__doc__)
        return 2
    command, root, store, extras = argv[0], argv[1], argv[2], set(argv[3:])
    os.makedirs(store, exist_ok=True)
    summary = (save if command == "save" else restore)(root, store, extras)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
