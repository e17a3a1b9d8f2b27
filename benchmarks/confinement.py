"""What confinement costs per shell call: a confined `exec` against an unconfined one, same run.

For each confinement this machine has (bwrap, landlock), three calls are timed, interleaved with
the unconfined LocalSandbox doing the same so that drift on a shared machine hits both alike:
- `true`: the floor of one call;
- `rg` over a generated tree of 1,000 files (a search tool's call);
- for bwrap also a peer: a fresh `bwrap ... bash -c true` per call, the way a harness without a
  per-session helper would confine each command.
Ratios are of medians. The goal is at most 1.3x on `true`-sized calls.

    python benchmarks/confinement.py [--calls 300] [--files 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from sandbox.confinement.bwrap import bwrap_arguments
from sandbox.confinement.detect import bwrap_problem, landlock_problem
from sandbox.confinement.sandbox import ConfinedSandbox
from sandbox.local import LocalSandbox


def make_tree(root: str, files: int) -> None:
    for i in range(files):
        directory = os.path.join(root, f"pkg{i // 50}")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"module{i}.py"), "w") as f:
            f.write("".join(f"def function_{i}_{j}(value):\n    return value + {j}\n\n" for j in range(20)))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def compare(name: str, ours: Callable[[], object], peer: Callable[[], object], calls: int) -> None:
    ours(), peer()  # warm-up: page cache, first spawn
    mine, theirs = [], []
    for _ in range(calls):
        mine.append(timed(ours))
        theirs.append(timed(peer))
    a, b = statistics.median(mine), statistics.median(theirs)
    print(f"  {name:<44} {a * 1000:7.2f} ms vs {b * 1000:7.2f} ms unconfined   {a / b:5.2f}x")


def checked(sandbox: LocalSandbox, command: str) -> Callable[[], object]:
    def run() -> None:
        result = sandbox.exec(command, timeout=60)
        assert result.exit_code in (0, 1), result.output  # rg: 1 when nothing matched

    return run


def fresh_bwrap(workspace: str) -> Callable[[], object]:
    command = [*bwrap_arguments(workspace, env={}, network="host"), "--", "bash", "-c", "true"]
    return lambda: subprocess.run(command, check=True, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls of each kind")
    parser.add_argument("--files", type=int, default=1000, help="files in the tree rg searches")
    args = parser.parse_args()
    workspace = tempfile.mkdtemp(prefix="mmx-agent-confinement-bench.")
    try:
        make_tree(workspace, args.files)
        unconfined = LocalSandbox(workspace)
        rg = "rg -c 'return value \\+ 7$' ."
        for mode, problem in (("bwrap", bwrap_problem("host")), ("landlock", landlock_problem("host"))):
            if problem:
                print(f"{mode}: not available here ({problem})")
                continue
            started = time.perf_counter()
            with ConfinedSandbox(workspace, mode=mode) as confined:
                print(f"{mode}: session start {(time.perf_counter() - started) * 1000:.0f} ms")
                compare("true", checked(confined, "true"), checked(unconfined, "true"), args.calls)
                if shutil.which("rg"):
                    compare(
                        f"rg over {args.files} files",
                        checked(confined, rg),
                        checked(unconfined, rg),
                        args.calls // 3,
                    )
                if mode == "bwrap":
                    compare(
                        "peer: a fresh bwrap per call, `true`",
                        fresh_bwrap(workspace),
                        checked(unconfined, "true"),
                        args.calls,
                    )
    finally:
        shutil.rmtree(workspace)


if __name__ == "__main__":
    main()
