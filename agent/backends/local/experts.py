"""The M2 mixture of experts: sigmoid router and the PyTorch ways to run the chosen experts (ops.py picks
one by size; the CPU kernels and Triton kinds run most calls without them).

Expert weights are stacked after loading: `w13` [E, 2*I, H] (rows 0..I-1 are w1 = gate, rows I.. are
w3 = up) and `w2` [E, H, I], i.e. [E, out, in] like nn.Linear. No path loops over tokens in Python, and
none but the CPU prefill one reads a device value on the host, so a decode step stays capturable as a
GPU graph.

- `experts_looped` (CPU prefill): rows sorted as in `experts_grouped`, then a matmul pair per busy
  expert, each scattered into an fp32 accumulator as it finishes. It reads the row counts on the host,
  which an eager CPU prefill can afford, and keeps no full-size temporaries beside the accumulator.
- `experts_grouped` (decode of large experts, GPU prefill): sort the (token, slot) pairs by expert, one
  grouped GEMM per projection over the contiguous per-expert row blocks (`F.grouped_mm` skips experts
  with no rows, so only chosen experts' weights are read), scatter back with the routing weights
  (`index_add_`).
- `experts_gathered` (decode of small experts): gather the chosen experts' weights by index, batched
  mat-vecs. Fewest ops, but the gather copies the weights.
- `experts_indexed`: the gathered path as multiply-and-reduce, for the compiled decode step only.

Measured with torch 2.13 on the 2-core Xeon (AMX) dev box (benchmarks/moe_layer.py for real width):
real-width 1-token decode, grouped ~13-18 GB/s of expert weights in bf16, ~30 GB/s in fp32, while
gathering runs at 1-7 GB/s (the copy lands on fresh pages); 1024-token prefill in bf16 (weights streamed
from DRAM), looped 7.3-12.2 GB/s against grouped 5.6-7.9 GB/s in the same runs (CPU grouped_mm is a
loop of the same matmuls plus full-size copies). Small experts (the `small` preset, E=32): gathered
beats grouped in bf16 (~216 vs ~540 us; the CPU grouped_mm pays a per-expert cost for all E experts)
and grouped wins in fp32 above ~1 MB gathered.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def route(
    h: torch.Tensor, gate_weight: torch.Tensor, correction_bias: torch.Tensor | None, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid router in fp32: the bias only picks the experts; the weights are the picked scores
    renormalised to sum to 1. Returns (weights fp32 [N, k], expert ids [N, k])."""
    scores = F.linear(h if h.dtype == torch.float32 else h.float(), gate_weight).sigmoid()  # gate is fp32
    choice = scores if correction_bias is None else scores + correction_bias
    idx = torch.topk(choice, top_k, dim=-1, sorted=False).indices
    weights = scores.gather(-1, idx)
    return weights / weights.sum(-1, keepdim=True), idx


@functools.lru_cache(maxsize=16)
def _expert_ids(num_experts: int, device: torch.device) -> torch.Tensor:
    return torch.arange(num_experts, device=device)


def experts_grouped(
    x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor
) -> torch.Tensor:
    """x [N, H], weights/idx [N, k] -> [N, H]. Sorted rows, grouped GEMMs, weighted scatter-add."""
    n, k = idx.shape
    inter = w2.shape[-1]
    sorted_ids, order = idx.reshape(-1).sort(stable=True)
    # End offset of each expert's row block; experts with no rows get an empty block.
    ends = torch.searchsorted(sorted_ids, _expert_ids(w13.shape[0], x.device), right=True, out_int32=True)
    rows = x.expand(k, -1).contiguous() if n == 1 else x.index_select(0, order // k)
    h = F.grouped_mm(rows, w13.transpose(1, 2), offs=ends)
    y = F.grouped_mm(F.silu(h[:, :inter]) * h[:, inter:], w2.transpose(1, 2), offs=ends)
    row_weights = weights.reshape(-1).take(order)
    if n == 1:  # one token: the weighted sum is a [1, k] x [k, H] product
        return (row_weights[None] @ y.float()).to(x.dtype)
    out = torch.zeros(n, x.shape[1], dtype=torch.float32, device=x.device)
    return out.index_add_(0, order // k, y.float() * row_weights[:, None]).to(x.dtype)


def dequantize_expert(w: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One FP8 expert matrix [out, in] with fp32 scales [out, ceil(in/128)] -> dtype."""
    return (w.float() * scale.repeat_interleave(128, -1)[:, : w.shape[-1]]).to(dtype)


def experts_looped(
    x: torch.Tensor,
    weights: torch.Tensor,
    idx: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    scales: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """x [N, H], weights/idx [N, k] -> [N, H]. Sorted rows, a matmul pair per busy expert, weighted
    scatter-add into fp32 (host-side row counts: eager CPU prefill only). With `scales`, the experts are
    FP8 (loader's fp8_experts) and each busy one is dequantized just before its matmuls; bf16 experts
    under fp32 x (loader's bf16_weights) are widened the same way."""
    n, k = idx.shape
    inter = w2.shape[-1]
    sorted_ids, order = idx.reshape(-1).sort(stable=True)
    counts = torch.bincount(sorted_ids, minlength=w13.shape[0]).tolist()
    tokens = order // k
    row_weights = weights.reshape(-1).take(order)[:, None]
    out = torch.zeros(n, x.shape[1], dtype=torch.float32, device=x.device)
    start = 0
    for expert, count in enumerate(counts):
        if count == 0:
            continue
        end = start + count
        rows = tokens[start:end]
        up, down = w13[expert], w2[expert]
        if scales is not None:
            up = dequantize_expert(up, scales[0][expert], x.dtype)
            down = dequantize_expert(down, scales[1][expert], x.dtype)
        elif up.dtype != x.dtype:
            up, down = up.to(x.dtype), down.to(x.dtype)
        h = F.linear(x.index_select(0, rows), up)
        y = F.linear(F.silu(h[:, :inter]) * h[:, inter:], down)
        out.index_add_(0, rows, y.float().mul_(row_weights[start:end]))
        start = end
    return out.to(x.dtype)


def experts_gathered(
    x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor
) -> torch.Tensor:
    """x [N, H], weights/idx [N, k] -> [N, H]. Chosen experts' weights gathered, batched mat-vecs."""
    n, k = idx.shape
    inter = w2.shape[-1]
    flat = idx.reshape(-1)
    rows = x.expand(k, -1) if n == 1 else x.repeat_interleave(k, 0)
    # index_select, not w13[flat]: advanced indexing is several times slower on CPU.
    h = torch.bmm(w13.index_select(0, flat), rows.unsqueeze(-1)).squeeze(-1)
    y = torch.bmm(w2.index_select(0, flat), (F.silu(h[:, :inter]) * h[:, inter:]).unsqueeze(-1))
    y = y.view(n, k, -1)
    if y.dtype != torch.float32:
        return torch.bmm(weights.view(n, 1, k), y.float()).view(n, -1).to(x.dtype)
    return torch.bmm(weights.view(n, 1, k), y).view(n, -1)


def experts_indexed(
    x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor
) -> torch.Tensor:
    """The gathered path written as multiply-and-reduce over the indexed weights. Under torch.compile
    this fuses into one pass over the chosen experts' weights (no copy); eager would materialize the
    product, so only the compiled decode step uses it."""
    inter = w2.shape[-1]
    h = (w13[idx] * x[:, None, None, :]).sum(-1)  # [N, k, 2I]
    y = (w2[idx] * (F.silu(h[..., :inter]) * h[..., inter:])[..., None, :]).sum(-1)  # [N, k, H]
    return (weights[..., None] * y.float()).sum(1).to(x.dtype)
