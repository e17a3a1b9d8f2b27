"""Gold and test patches derived from two releases' source distributions, at build time.

A task of the pypi-fixes suite names the release it starts from (`source.sdist`), the release
that fixed the bug (`fix_release.sdist`) and which files form each patch. The patches are the
differences of those files between the two releases, computed here with git, so the repository
stores references only, never third-party code. Results are cached under the user's cache dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from evals.sources import SourceError, cache_root, sdist_tree
from evals.task import Task

RECIPE_VERSION = 1  # bump when the diff settings below change


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    result = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, errors="surrogateescape"
    )
    if result.returncode != 0:
        raise SourceError(f"git {' '.join(args[:2])} failed while deriving patches: {result.stderr.strip()}")
    return result.stdout


def diff_between(old_root: Path, new_root: Path, files: list[str]) -> str:
    """A git-style patch (applies with `git apply` at the root) taking `files` from old to new."""
    with tempfile.TemporaryDirectory(prefix="mmx-derive-") as scratch:
        repo = Path(scratch)
        _git(repo, "init", "-q")
        for version, root in (("old", old_root), ("new", new_root)):
            for name in files:
                target = repo / name
                if target.exists():
                    target.unlink()
                if (root / name).is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(root / name, target)
            _git(repo, "add", "-A", "-f")
            if version == "old":
                _git(
                    repo,
                    "-c",
                    "user.name=mmx",
                    "-c",
                    "user.email=mmx@localhost",
                    "commit",
                    "-q",
                    "--allow-empty",
                    "-m",
                    "old",
                )
        missing = [
            name for name in files if not (old_root / name).exists() and not (new_root / name).exists()
        ]
        if missing:
            raise SourceError(f"file(s) {missing} are in neither release")
        return _git(
            repo, "diff", "--cached", "--binary", "--full-index", "--no-renames", "--no-color", "HEAD"
        )


def derive_patches(task: Task) -> Task:
    """The task with `patch` and `test_patch` filled from its fix release (unchanged if it has none)."""
    fix = task.fix_release
    if fix is None:
        return task
    base_spec = (task.source or {}).get("sdist")
    if not base_spec:
        raise SourceError(
            f"{task.instance_id}: a fix_release needs source.sdist (the release the task starts from)"
        )
    key = hashlib.sha256(
        json.dumps([RECIPE_VERSION, base_spec, fix.to_record()], sort_keys=True).encode()
    ).hexdigest()[:20]
    cached = cache_root() / "derived" / f"{key}.json"
    if cached.is_file():
        patches = json.loads(cached.read_text())
    else:
        old, new = sdist_tree(base_spec).path, sdist_tree(fix.sdist).path
        patches = {
            "patch": diff_between(old, new, fix.patch_files),
            "test_patch": diff_between(old, new, fix.test_files),
        }
        for name, files in (("patch", fix.patch_files), ("test_patch", fix.test_files)):
            if not patches[name].strip():
                raise SourceError(f"{task.instance_id}: {files} are the same in {base_spec} and {fix.sdist}")
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}")
        partial.write_text(json.dumps(patches))
        os.replace(partial, cached)
    task.patch, task.test_patch = patches["patch"], patches["test_patch"]
    return task
