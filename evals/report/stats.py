"""The numbers the report shows: resolve rates per repository, distributions, and the paired A/B
comparison (a paired bootstrap interval and an exact McNemar test on the shared instances)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from evals.report.load import EvalOutput

BOOTSTRAP_SEED = 20240101  # fixed: the same outputs always give the same interval
BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass
class RepoRate:
    repo: str
    instances: int
    resolved_jobs: int
    jobs: int

    @property
    def rate(self) -> float:
        return self.resolved_jobs / self.jobs if self.jobs else 0.0


def per_repository(output: EvalOutput) -> list[RepoRate]:
    """Resolve rate per repository over every run (resolved jobs / jobs)."""
    by_repo: dict[str, list[str]] = {}
    for instance_id in output.instance_ids:
        by_repo.setdefault(output.repos.get(instance_id) or "(unknown)", []).append(instance_id)
    return [
        RepoRate(repo, len(ids), sum(output.resolved_runs(i) for i in ids), len(ids) * output.runs)
        for repo, ids in sorted(by_repo.items())
    ]


@dataclass
class Distribution:
    values: list[float]

    @property
    def count(self) -> int:
        return len(self.values)

    def describe(self) -> dict[str, float] | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        return {
            "mean": statistics.fmean(ordered),
            "median": statistics.median(ordered),
            "p90": ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)],
            "max": ordered[-1],
            "total": math.fsum(ordered),
        }


METRICS = {
    "turns": ("Turns", lambda job: job.turns),
    "tokens": ("Tokens (input + output)", lambda job: job.tokens),
    "cost": ("Cost (USD)", lambda job: job.cost),
    "agent_seconds": ("Agent wall time (s)", lambda job: job.agent_seconds),
    "grading_seconds": ("Grading wall time (s)", lambda job: job.grading_seconds),
}


def distributions(output: EvalOutput) -> dict[str, Distribution]:
    """Each metric over the jobs that recorded it (gold, empty and predictions record no turns)."""
    jobs = output.all_jobs()
    return {
        name: Distribution([v for job in jobs if (v := read(job)) is not None])
        for name, (_title, read) in METRICS.items()
    }


def infra_failures_by_kind(output: EvalOutput) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in output.all_jobs():
        if failure := job.infra_failure:
            kind = str(failure.get("kind") or "unknown")
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: under no difference each of the b + c discordant pairs is a
    fair coin, so p = 2 * P(Binomial(b + c, 1/2) <= min(b, c)), capped at 1."""
    n = b + c
    if n == 0:
        return 1.0
    tail = math.fsum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap_interval(
    differences: list[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile interval of the mean paired difference, resampling instances with replacement."""
    if not differences:
        return (0.0, 0.0)
    values = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[draws].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


@dataclass
class Comparison:
    """B against A on the instances both ran; rates are per instance: resolved runs / runs."""

    a: str
    b: str
    shared: list[str]
    rate_a: float
    rate_b: float
    interval: tuple[float, float]
    b_only: list[str] = field(default_factory=list)  # resolved (by majority of runs) by B, not A
    a_only: list[str] = field(default_factory=list)
    p_value: float = 1.0
    only_in_a: int = 0
    only_in_b: int = 0

    @property
    def difference(self) -> float:
        return self.rate_b - self.rate_a


def compare(a: EvalOutput, b: EvalOutput) -> Comparison:
    in_b = set(b.instance_ids)
    shared = [i for i in a.instance_ids if i in in_b]
    score_a = {i: a.resolved_runs(i) / a.runs for i in shared}
    score_b = {i: b.resolved_runs(i) / b.runs for i in shared}
    # An instance counts as resolved for the test and the flip lists when more than half its runs resolved it.
    wins_a = {i for i in shared if score_a[i] > 0.5}
    wins_b = {i for i in shared if score_b[i] > 0.5}
    b_only = [i for i in shared if i in wins_b and i not in wins_a]
    a_only = [i for i in shared if i in wins_a and i not in wins_b]
    return Comparison(
        a=a.label,
        b=b.label,
        shared=shared,
        rate_a=statistics.fmean(score_a.values()) if shared else 0.0,
        rate_b=statistics.fmean(score_b.values()) if shared else 0.0,
        interval=paired_bootstrap_interval([score_b[i] - score_a[i] for i in shared]),
        b_only=b_only,
        a_only=a_only,
        p_value=mcnemar_exact_p(len(a_only), len(b_only)),
        only_in_a=len(a.instance_ids) - len(shared),
        only_in_b=len(in_b - set(shared)),
    )
