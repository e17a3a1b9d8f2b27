"""Router and the expert paths against the naive per-expert loop, including lopsided routing; also the
choice among them that the torch ops make, eager and traced."""

from __future__ import annotations

import pytest
import torch

from agent.backends.local.experts import (
    experts_gathered,
    experts_grouped,
    experts_indexed,
    experts_looped,
    route,
)
from agent.backends.local.ops import TorchOps
from tests.local.reference import moe_reference

E, H, INTER, K = 8, 48, 24, 3
TORCH_OPS = TorchOps(torch.device("cpu"), torch.float32)
CHOSEN = [TORCH_OPS.experts, TORCH_OPS.traced().experts]
PATHS = [experts_grouped, experts_looped, experts_gathered, experts_indexed, *CHOSEN]


def experts(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    w1, w3 = torch.randn(E, INTER, H, generator=g) / H**0.5, torch.randn(E, INTER, H, generator=g) / H**0.5
    w2 = torch.randn(E, H, INTER, generator=g) / INTER**0.5
    w13 = torch.cat([w1, w3], dim=1)  # the loader's layout: gate rows, then up rows
    return [w.to(dtype) for w in (w1, w3, w2, w13)]


def routed(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, H, generator=g)
    idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(n)])
    w = torch.rand(n, K, generator=g) + 0.1
    return x, w / w.sum(-1, keepdim=True), idx


TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=3e-2, rtol=3e-2)}


@pytest.mark.parametrize("path", PATHS, ids=lambda f: f.__qualname__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("n", [1, 2, 5, 64])
def test_paths_equal_reference_loop(path, dtype, n):
    w1, w3, w2, w13 = experts(dtype)
    x, w, idx = routed(n, seed=n)
    x = x.to(dtype)
    out = path(x, w, idx, w13, w2)
    assert out.dtype == dtype and out.shape == (n, H)
    torch.testing.assert_close(out.float(), moe_reference(x, w, idx, w1, w3, w2), **TOL[dtype])


@pytest.mark.parametrize("path", PATHS, ids=lambda f: f.__qualname__)
def test_uneven_routing(path):
    """Every token on the same K experts (the rest get zero rows), then one token on different ones."""
    w1, w3, w2, w13 = experts(torch.float32, seed=1)
    x, w, _ = routed(33, seed=2)
    idx = torch.tensor([[5, 0, 7]]).repeat(33, 1)
    idx[17] = torch.tensor([1, 2, 3])
    torch.testing.assert_close(
        path(x, w, idx, w13, w2), moe_reference(x, w, idx, w1, w3, w2), **TOL[torch.float32]
    )
    # Top-1 routing with a single expert taking every token.
    idx1, w1col = torch.full((33, 1), 6), torch.ones(33, 1)
    torch.testing.assert_close(
        path(x, w1col, idx1, w13, w2), moe_reference(x, w1col, idx1, w1, w3, w2), **TOL[torch.float32]
    )


@pytest.mark.parametrize("chosen", CHOSEN, ids=lambda f: f.__qualname__)
@pytest.mark.parametrize("n", [1, 40])
def test_dispatch_above_the_gather_limit(chosen, n, monkeypatch):
    """Above the gather limit the torch ops take the grouped path (decode) or the looped one (CPU prefill);
    traced, the grouped one (no host sync in a graph) past the indexed path's few pairs."""
    import agent.backends.local.ops as ops_module

    monkeypatch.setattr(ops_module, "GATHER_LIMIT_BYTES", 0)
    w1, w3, w2, w13 = experts(torch.float32, seed=4)
    x, w, idx = routed(n, seed=5)
    torch.testing.assert_close(
        chosen(x, w, idx, w13, w2), moe_reference(x, w, idx, w1, w3, w2), **TOL[torch.float32]
    )


def test_router_bias_selects_but_does_not_weight():
    g = torch.Generator().manual_seed(0)
    h, gate = torch.randn(6, H, generator=g), torch.randn(E, H, generator=g)
    bias = torch.zeros(E)
    bias[2] = 10.0  # forces expert 2 into every token's choice
    weights, idx = route(h, gate, bias, K)
    scores = torch.sigmoid(h @ gate.T)
    for t in range(6):
        chosen = idx[t].tolist()
        expected = set(torch.topk(scores[t] + bias, K).indices.tolist())
        assert set(chosen) == expected and 2 in chosen
        plain = scores[t, chosen]
        torch.testing.assert_close(weights[t], plain / plain.sum())  # unbiased scores, renormalised
    assert weights.dtype == torch.float32


def test_router_runs_in_fp32_for_bf16_activations():
    g = torch.Generator().manual_seed(1)
    h, gate = torch.randn(4, H, generator=g), torch.randn(E, H, generator=g)
    w32, i32 = route(h, gate, None, K)
    w16, i16 = route(h.to(torch.bfloat16), gate, None, K)
    assert w16.dtype == torch.float32
    assert (i16.sort(-1).values == i32.sort(-1).values).float().mean() > 0.8
