"""Personalized PageRank by power iteration over a sparse weighted graph (no numpy, no networkx).

Besides plain nodes the graph may hold *hubs*: pass-through points that split what flows in
evenly among their targets within the same step, so they cost no damping. A hub stands for a
name defined in many files, whose |referrers| x |definers| direct edges would swamp the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Graph:
    size: int  # nodes are 0 .. size-1
    edges: list[dict[int, float]] = field(default_factory=list)  # node -> {node: weight}
    hub_edges: list[dict[int, float]] = field(default_factory=list)  # node -> {hub: weight}
    hub_targets: list[list[int]] = field(default_factory=list)  # hub -> nodes it feeds evenly

    def __post_init__(self):
        if not self.edges:
            self.edges = [{} for _ in range(self.size)]
        if not self.hub_edges:
            self.hub_edges = [{} for _ in range(self.size)]

    def add_edge(self, source: int, target: int, weight: float) -> None:
        self.edges[source][target] = self.edges[source].get(target, 0.0) + weight

    def add_hub(self, targets: list[int]) -> int:
        self.hub_targets.append(targets)
        return len(self.hub_targets) - 1

    def add_hub_edge(self, source: int, hub: int, weight: float) -> None:
        self.hub_edges[source][hub] = self.hub_edges[source].get(hub, 0.0) + weight


def pagerank(
    graph: Graph,
    personalization: list[float] | None = None,
    damping: float = 0.85,
    tolerance: float = 1e-6,
    max_iterations: int = 100,
) -> list[float]:
    """Ranks summing to 1. Mass of nodes without out-edges restarts at the personalization."""
    n = graph.size
    if n == 0:
        return []
    teleport = _normalized(personalization) if personalization else [1.0 / n] * n
    out_total = [sum(e.values()) + sum(h.values()) for e, h in zip(graph.edges, graph.hub_edges, strict=True)]
    # Row-normalise once so the loop only multiplies and adds.
    edges = [
        [(t, w / total) for t, w in e.items()] if total else []
        for e, total in zip(graph.edges, out_total, strict=True)
    ]
    hub_edges = [
        [(h, w / total) for h, w in hubs.items()] if total else []
        for hubs, total in zip(graph.hub_edges, out_total, strict=True)
    ]
    dangling = [i for i in range(n) if not out_total[i]]
    rank = teleport[:]
    for _ in range(max_iterations):
        new = [0.0] * n
        hub_in = [0.0] * len(graph.hub_targets)
        for source in range(n):
            mass = rank[source]
            if not mass:
                continue
            for target, weight in edges[source]:
                new[target] += mass * weight
            for hub, weight in hub_edges[source]:
                hub_in[hub] += mass * weight
        for hub, inflow in enumerate(hub_in):
            if inflow:
                targets = graph.hub_targets[hub]
                share = inflow / len(targets)
                for target in targets:
                    new[target] += share
        lost = sum(rank[i] for i in dangling)
        restart = 1.0 - damping + damping * lost
        new = [damping * value + restart * t for value, t in zip(new, teleport, strict=True)]
        change = sum(abs(a - b) for a, b in zip(new, rank, strict=True))
        rank = new
        if change < tolerance * n:
            break
    return rank


def _normalized(values: list[float]) -> list[float]:
    total = sum(values)
    if total <= 0:
        return [1.0 / len(values)] * len(values)
    return [v / total for v in values]
