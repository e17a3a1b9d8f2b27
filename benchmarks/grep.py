"""The grep tool (both engines) against raw ripgrep on the same tree, in the same run.

The tree is a copy of CPython's Lib/ (as in repo_map.py). For each query the peer is one plain
`rg -n` over the root with the same filters, all of its output read; ours is the whole tool call
(engine, sorting, formatting, the result capped at max_results). Times are medians of --runs.
Ratio = our seconds / rg seconds: how much slower than the raw engine the tool is.

    python benchmarks/grep.py [--runs 5] [--workdir /tmp/mmx-bench]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.tools.base import ToolContext  # noqa: E402
from agent.tools.search.tools import GrepTool  # noqa: E402
from benchmarks.repo_map import prepare_repository  # noqa: E402
from sandbox.local import LocalSandbox  # noqa: E402

QUERIES = [
    {"pattern": "def __init__"},
    {"pattern": r"class \w+Error\b", "glob": "*.py"},
    {"pattern": "todo|fixme", "ignore_case": True, "context": 2},
    {"pattern": r"^import (os|sys)$", "max_results": 1000},
]
RG_FLAGS = ["--no-config", "--no-require-git", "--no-ignore-parent", "--no-ignore-global", "-n"]


def rg_command(query: dict) -> list[str]:
    command = ["rg", *RG_FLAGS]
    if query.get("ignore_case"):
        command.append("-i")
    if query.get("context"):
        command += ["-C", str(query["context"])]
    if query.get("glob"):
        command += ["-g", query["glob"]]
    return [*command, "-e", query["pattern"]]


def median_seconds(action, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mmx-bench")
    args = parser.parse_args()
    if shutil.which("rg") is None:
        sys.exit("ripgrep (rg) is needed for this benchmark: apt-get install ripgrep")
    args.workdir.mkdir(parents=True, exist_ok=True)
    repo = prepare_repository(args.workdir)
    ctx = ToolContext(LocalSandbox(repo))
    print(f"tree: {repo}; medians of {args.runs} runs; ratio = ours / raw rg")
    print(f"{'query':44} {'raw rg':>8} {'tool+rg':>8} {'ratio':>6} {'tool+py':>8} {'ratio':>6}  matches")
    for query in QUERIES:

        def raw_rg(query=query):
            subprocess.run(rg_command(query), cwd=repo, capture_output=True, check=False)

        results = {}

        def tool(engine, query=query, results=results):
            results[engine] = GrepTool(engine).run(dict(query), ctx)

        rg_seconds = median_seconds(raw_rg, args.runs)
        with_rg = median_seconds(lambda: tool("rg"), args.runs)
        with_python = median_seconds(lambda: tool("python"), args.runs)
        assert results["rg"].output == results["python"].output, "the engines disagree"
        label = " ".join(f"{k}={v!r}" for k, v in query.items())[:44]
        print(
            f"{label:44} {rg_seconds:7.3f}s {with_rg:7.3f}s {with_rg / rg_seconds:5.1f}x "
            f"{with_python:7.3f}s {with_python / rg_seconds:5.1f}x  {results['rg'].data['total_matches']}"
        )


if __name__ == "__main__":
    main()
