"""`--ray local:N`: a throwaway Ray cluster on this machine, kept by a process of its own.

The head starts this module in a session of its own and holds its stdin. The cluster lives until
that stdin closes, which happens when the head is done and also when the head is killed (SIGKILL
included); then this process shuts the cluster down properly. Ray's own clean-up on a dead parent
leaves some of its agent processes behind, which is why the cluster does not live in the head.

    python -m evals.fleet_local --nodes N --cpus C --memory BYTES   (prints the address, one line)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

DOCKER_RESOURCE = "docker"
OBJECT_STORE = 256 * 2**20  # a job's folder is a few MB at most
STOP_SECONDS = 60.0


class LocalClusterError(Exception):
    pass


def serve(nodes: int, cpus: int, memory: int) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": OBJECT_STORE},
    )
    try:
        for _ in range(nodes):  # one job at a time each, with this machine's Docker engine
            cluster.add_node(
                num_cpus=cpus, memory=memory, resources={DOCKER_RESOURCE: 1}, object_store_memory=OBJECT_STORE
            )
        print(json.dumps({"address": cluster.address}), flush=True)
        sys.stdin.read()  # until the head closes it, or dies
    finally:
        cluster.shutdown()


@contextmanager
def local_cluster(nodes: int, cpus: int, memory: int) -> Iterator[str]:
    """Starts the cluster's keeper; yields the cluster's address; stops it on the way out."""
    command = [sys.executable, "-m", "evals.fleet_local", "--nodes", str(nodes)]
    command += ["--cpus", str(cpus), "--memory", str(memory)]
    keeper = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a Ctrl-C meant for the head must not tear the cluster down mid-way
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    try:
        assert keeper.stdout is not None and keeper.stdin is not None
        line = keeper.stdout.readline()
        if not line:
            keeper.wait(timeout=STOP_SECONDS)
            raise LocalClusterError(f"the local Ray cluster did not start (exit {keeper.returncode})")
        yield json.loads(line)["address"]
    finally:
        if keeper.stdin:
            keeper.stdin.close()
        try:
            keeper.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--cpus", type=int, required=True)
    parser.add_argument("--memory", type=int, required=True)
    args = parser.parse_args()
    serve(args.nodes, args.cpus, args.memory)


if __name__ == "__main__":
    main()
