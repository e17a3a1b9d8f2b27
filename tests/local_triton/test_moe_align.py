"""Block alignment of (token, slot) pairs by expert: plain torch, so it runs in this process."""

from __future__ import annotations

import pytest
import torch

from agent.backends.local.moe_align import align_pairs, max_blocks


def check_layout(idx: torch.Tensor, num_experts: int, block_m: int) -> int:
    """Every pair once, each block one expert's pairs (plus padding), experts in order, padding only at
    the end of an expert's last block; returns the number of blocks in use."""
    al = align_pairs(idx, num_experts, block_m)
    flat, p = idx.reshape(-1), idx.numel()
    assert al.sorted_pairs.shape == (max_blocks(p, num_experts, block_m) * block_m,)
    assert al.block_experts.shape == (max_blocks(p, num_experts, block_m),)
    used = int(al.num_padded) // block_m
    assert int(al.num_padded) % block_m == 0
    rows = al.sorted_pairs[: used * block_m].view(used, block_m)
    real = rows[rows < p]
    assert sorted(real.tolist()) == list(range(p))
    assert (al.sorted_pairs[used * block_m :] == p).all()  # unused tail: sentinel only
    for b in range(used):
        e = int(al.block_experts[b])
        pairs = rows[b][rows[b] < p]
        assert len(pairs) > 0 and (flat[pairs.long()] == e).all()
        assert (rows[b][len(pairs) :] == p).all()  # padding after the pairs
    counts = torch.bincount(flat, minlength=num_experts)
    assert used == int(((counts + block_m - 1) // block_m).sum())
    assert al.block_experts[:used].tolist() == sorted(al.block_experts[:used].tolist())
    return used


@pytest.mark.parametrize("block_m", [1, 4, 16])
@pytest.mark.parametrize("n", [1, 3, 50])
def test_random_routing(n, block_m):
    g = torch.Generator().manual_seed(n * block_m)
    idx = torch.stack([torch.randperm(8, generator=g)[:3] for _ in range(n)])
    check_layout(idx, 8, block_m)


def test_uneven_routing():
    idx = torch.tensor([[5, 0, 7]]).repeat(40, 1)  # five experts get nothing
    assert check_layout(idx, 8, 16) == 3 * 3
    assert check_layout(torch.full((40, 1), 6), 8, 16) == 3  # one expert takes every token


def test_worst_case_bound_is_reached_and_never_exceeded():
    """Each of m experts one pair past a whole block: m + (P - m) // B blocks, the bound itself."""
    e, b = 6, 4
    idx = torch.arange(e).repeat_interleave(b + 1).view(-1, 1)  # 6 experts x 5 pairs
    assert check_layout(idx, e, b) == max_blocks(idx.numel(), e, b) == 12
    assert max_blocks(8, 256, 16) == 8  # a batch-1 decode step at top-8
    assert max_blocks(4096 * 8, 256, 64) == 764


def test_buffers_depend_on_sizes_only():
    """Same shapes for any routing: what lets a decode step be captured once and replayed."""
    a = align_pairs(torch.zeros(7, 2, dtype=torch.long), 8, 4)
    b = align_pairs(torch.arange(14).view(7, 2) % 8, 8, 4)
    assert [t.shape for t in a[:3]] == [t.shape for t in b[:3]]
