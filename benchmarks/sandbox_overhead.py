"""What a DockerSandbox costs: create -> exec `true` -> remove, and one exec in a warm sandbox.

Peers, measured in the same run and interleaved with ours so drift hits both alike:
- `docker run --rm --network none IMAGE true` through the docker CLI (a fresh container per command,
  the way many harnesses run each step);
- `docker exec CONTAINER true` through the CLI, against our warm sandbox (one exec per action, as
  mini-swe-agent does).
Ours has more to do per sandbox (lifeline attach, limits, the in-container helper), and far less
per command (the helper spawns it: no new exec session in the engine).

    python benchmarks/sandbox_overhead.py [--runs 50] [--execs 200] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time

from sandbox.base_image import base_image_tag
from sandbox.docker import DockerSandbox
from sandbox.engine import connect, require_image


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def sandbox_cycle(client, image: str) -> tuple[float, float, float]:
    """Seconds to create, exec `true`, and close (remove) one sandbox."""
    started = time.perf_counter()
    sandbox = DockerSandbox.create(image, client=client)
    created = time.perf_counter()
    result = sandbox.exec("true")
    executed = time.perf_counter()
    sandbox.close()
    closed = time.perf_counter()
    assert result.exit_code == 0, result.output
    return created - started, executed - created, closed - executed


def docker_cli(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, stdout=subprocess.DEVNULL)


def report(name: str, samples: list[float]) -> None:
    print(
        f"{name:<48} median {statistics.median(samples) * 1000:8.1f} ms   p95 {percentile(samples, 0.95) * 1000:8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="sandboxes created (and peer containers run)")
    parser.add_argument("--execs", type=int, default=200, help="commands run in one warm sandbox")
    parser.add_argument("--image", default=None, help="image (default: the bookworm base image)")
    args = parser.parse_args()
    client = connect()
    image = args.image or base_image_tag()
    require_image(client, image)
    has_cli = shutil.which("docker") is not None
    if not has_cli:
        print("(no docker CLI on PATH: the peers are skipped)")

    # Warm-up: first runs pay for page cache and engine start-up.
    sandbox_cycle(client, image)
    if has_cli:
        docker_cli("run", "--rm", "--network", "none", image, "true")

    totals, creates, execs, closes, peer_runs = [], [], [], [], []
    for _ in range(args.runs):
        create, execute, close = sandbox_cycle(client, image)
        creates.append(create)
        execs.append(execute)
        closes.append(close)
        totals.append(create + execute + close)
        if has_cli:
            peer_runs.append(timed(lambda: docker_cli("run", "--rm", "--network", "none", image, "true")))

    warm, peer_execs = [], []
    with DockerSandbox.create(image, client=client) as sandbox:
        for _ in range(args.execs):
            warm.append(timed(lambda: sandbox.exec("true")))
            if has_cli:
                peer_execs.append(timed(lambda: docker_cli("exec", sandbox.container_id, "true")))

    print(f"image {image}, {args.runs} sandboxes, {args.execs} warm commands")
    report("sandbox: create -> exec true -> remove", totals)
    report("  create (limits, lifeline, helper start)", creates)
    report("  exec true", execs)
    report("  close (remove)", closes)
    if peer_runs:
        report("peer: docker run --rm --network none IMG true", peer_runs)
        ratio = statistics.median(totals) / statistics.median(peer_runs)
        print(f"{'ratio (sandbox cycle / docker run), medians':<48} {ratio:.2f}x")
    report("warm sandbox: exec true", warm)
    if peer_execs:
        report("peer: docker exec CONTAINER true", peer_execs)
        ratio = statistics.median(peer_execs) / statistics.median(warm)
        print(f"{'speed-up per command (docker exec / ours), medians':<48} {ratio:.1f}x")


if __name__ == "__main__":
    main()
