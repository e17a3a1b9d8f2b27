"""Group (token, slot) pairs by expert in padded row blocks, on the device, with fixed-size buffers.

The grouped expert GEMM (moe_kernels.grouped_*) runs one program per (row block, column tile) and each
row block must belong to a single expert, so every expert's pairs are laid out in whole blocks of
`block_m` rows, the last one padded with a sentinel pair id. How many blocks that takes depends on the
routing, which only the device knows; reading it on the host would break CUDA-graph capture. So the
buffers are sized for the worst case and the true padded length stays on the device, where the kernel
reads it and lets programs past the end exit at once.

Worst case: with P pairs spread over m non-empty experts (m <= min(E, P)), expert e takes
ceil(c_e / B) <= 1 + (c_e - 1) // B blocks, so the total is at most m + (P - m) // B blocks; that grows
with m, so m = min(E, P) bounds it. For a batch-1 decode step (P = 8, E = 256) that is 8 blocks, for a
4096-token prefill at B = 64 it is 764 blocks against 512 for perfectly even routing.

Only torch ops without host synchronisation are used (no bincount, nonzero or item), so this is
graph-capturable; the order of pairs inside an expert's block does not matter for the result, because
each row of a block is computed independently and written back by its pair id.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class AlignedPairs(NamedTuple):
    sorted_pairs: torch.Tensor  # int32 [max_blocks * block_m]: pair id (token * top_k + slot), or P = pad
    block_experts: torch.Tensor  # int32 [max_blocks]: the expert of each row block (E past the end)
    num_padded: torch.Tensor  # int32 [1]: rows in use (a multiple of block_m), on the device
    block_m: int


def max_blocks(num_pairs: int, num_experts: int, block_m: int) -> int:
    """Upper bound on the row blocks any routing of `num_pairs` pairs can need (module doc)."""
    m = min(num_experts, num_pairs)
    return m + (num_pairs - m) // block_m


def align_pairs(idx: torch.Tensor, num_experts: int, block_m: int) -> AlignedPairs:
    """idx [N, k] expert ids -> pairs grouped by expert in blocks of `block_m` rows (see module doc)."""
    flat = idx.reshape(-1)
    p, dev = flat.numel(), flat.device
    counts = torch.zeros(num_experts, dtype=torch.int32, device=dev)
    counts.index_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))  # bincount would sync
    padded = (counts + block_m - 1) // block_m * block_m
    padded_end = padded.cumsum(0, dtype=torch.int32)
    sorted_experts, order = flat.sort(stable=True)
    # Pair i of the sorted list is the (i - first_e)-th pair of its expert e; it goes that far into e's
    # padded segment.
    first = counts.cumsum(0, dtype=torch.int32) - counts
    rank = torch.arange(p, dtype=torch.int32, device=dev) - first[sorted_experts]
    dest = (padded_end - padded)[sorted_experts] + rank
    nb = max_blocks(p, num_experts, block_m)
    sorted_pairs = torch.full((nb * block_m,), p, dtype=torch.int32, device=dev)
    sorted_pairs.index_copy_(0, dest.long(), order.to(torch.int32))
    # Block b belongs to the first expert whose segment ends after row b * block_m.
    block_starts = torch.arange(0, nb * block_m, block_m, dtype=torch.int32, device=dev)
    block_experts = torch.searchsorted(padded_end, block_starts, right=True, out_int32=True)
    return AlignedPairs(sorted_pairs, block_experts, padded_end[-1:], block_m)
