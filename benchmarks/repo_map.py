"""Repo map build time, cold and warm cache: ours against aider's RepoMap, same repo, same run.

The repository is a git copy of CPython's Lib/ (the stdlib of the python running this script,
site-packages and __pycache__ left out). aider-chat 0.86.x is installed into a throwaway venv
under /tmp on first use (it needs PyPI); its map is built by aider_repo_map_driver.py there.
Each build runs in a fresh process and only the build itself is timed, for both tools:
- cold: no tags cache (ours: an empty XDG_CACHE_HOME; aider: .aider.tags.cache.v4 removed);
- warm: the cache from the previous build, files unchanged.
The map budget is the same (--map-tokens). Ratio = aider seconds / our seconds.

    python benchmarks/repo_map.py [--map-tokens 1024] [--cold-runs 1] [--warm-runs 3] [--workdir /tmp/mmx-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AIDER_VENV = Path("/tmp/mmx-bench-aider-venv")
AIDER_SPEC = "aider-chat>=0.86,<0.87"


def prepare_repository(workdir: Path) -> Path:
    repo = workdir / "cpython-lib"
    if (repo / ".git").is_dir():
        return repo
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    print(f"copying {stdlib} into {repo} ...", file=sys.stderr)
    shutil.copytree(stdlib, repo, ignore=shutil.ignore_patterns("site-packages", "__pycache__", "*.pyc"))
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost"}
    env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "stdlib"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return repo


def aider_python() -> Path:
    python = AIDER_VENV / "bin" / "python"
    probe = [str(python), "-c", "import aider.repomap"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"installing {AIDER_SPEC} into {AIDER_VENV} (a few minutes) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(AIDER_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", AIDER_SPEC], check=True)
    return python


def run_aider(python: Path, repo: Path, map_tokens: int, cold: bool) -> dict:
    if cold:
        shutil.rmtree(repo / ".aider.tags.cache.v4", ignore_errors=True)
    driver = [str(python), str(HERE / "aider_repo_map_driver.py"), str(repo), str(map_tokens)]
    done = subprocess.run(driver, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_ours(repo: Path, map_tokens: int, cache_home: Path) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    command = [sys.executable, __file__, "--ours-once", str(repo), str(map_tokens)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours_once(repo: str, map_tokens: int) -> None:
    """One build in this (fresh) process; prints JSON like the aider driver."""
    sys.path.insert(0, str(HERE.parent))
    from agent.tools.repo_map.ranked_map import build_repo_map
    from sandbox.local import LocalSandbox

    sandbox = LocalSandbox(repo)
    started = time.perf_counter()
    repo_map = build_repo_map(sandbox, map_tokens)
    seconds = time.perf_counter() - started
    stats = {"seconds": seconds, "chars": len(repo_map.text), "tokens": repo_map.estimated_tokens}
    print(json.dumps(stats | {"files": repo_map.files_total, "parsed": repo_map.files_parsed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--map-tokens", type=int, default=1024)
    parser.add_argument("--cold-runs", type=int, default=1)
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mmx-bench")
    parser.add_argument("--ours-once", nargs=2, metavar=("REPO", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours_once:
        ours_once(args.ours_once[0], int(args.ours_once[1]))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    repo = prepare_repository(args.workdir)
    python = aider_python()
    cache_home = Path(tempfile.mkdtemp(prefix="mmx-repo-map-cache-"))
    try:
        results = {"ours": {}, "aider": {}}
        # aider first, so any cost of a first read of the files from disk falls on it, not us.
        for _ in range(args.cold_runs):
            results["aider"].setdefault("cold", []).append(
                run_aider(python, repo, args.map_tokens, cold=True)
            )
            shutil.rmtree(cache_home, ignore_errors=True)
            results["ours"].setdefault("cold", []).append(run_ours(repo, args.map_tokens, cache_home))
        results["ours"]["warm"] = [run_ours(repo, args.map_tokens, cache_home) for _ in range(args.warm_runs)]
        results["aider"]["warm"] = [
            run_aider(python, repo, args.map_tokens, cold=False) for _ in range(args.warm_runs)
        ]
    finally:
        shutil.rmtree(cache_home, ignore_errors=True)

    print(
        f"repository: {repo} ({results['ours']['cold'][0]['files']} files mapped by us, "
        f"{results['aider']['cold'][0]['files']} tracked files given to aider); map budget {args.map_tokens} tokens"
    )
    for phase in ("cold", "warm"):
        ours = statistics.median(r["seconds"] for r in results["ours"][phase])
        aider = statistics.median(r["seconds"] for r in results["aider"][phase])
        runs = len(results["ours"][phase])
        print(
            f"{phase:>4} ({runs} run{'s' if runs > 1 else ''}, median): ours {ours:6.2f}s   aider {aider:6.2f}s   "
            f"ratio {aider / ours:5.1f}x faster"
        )
    ours_map, aider_map = results["ours"]["warm"][-1], results["aider"]["warm"][-1]
    print(
        f"map size: ours {ours_map['chars']} chars (~{ours_map['tokens']} tokens by chars/4), "
        f"aider {aider_map['chars']} chars ({aider_map['tokens']} tokens by its tokenizer)"
    )


if __name__ == "__main__":
    main()
