"""How the local model computes: one `Ops` object, picked once when the model is loaded.

model.py says what the network computes; its `ops` says how the heavy parts run: the projections
(`linear`), attention over the KV cache (`attention`) and the MoE block (`moe`). Three kinds:

- `TorchOps` ("torch"): plain PyTorch, the reference the other kinds are tested against. The expert
  path is picked by size (experts.py has the measurements).
- `CpuKernelOps` ("cpu-kernels"): our C++ kernels (cpu_kernels.py) on the CPU, for a few tokens at a
  time (decode, short prefill chunks); PyTorch for the rest.
- `TritonOps` ("triton"): fused Triton expert kernels (triton_moe.py), meant for CUDA; PyTorch for the
  rest. (On the CPU they run only under the Triton interpreter, which the tests use.)

`select_ops` picks the kind from the device and dtype: the CPU kernels on the CPU in fp32 or bf16 unless
switched off (MMX_AGENT_CPU_KERNELS=0) or unbuildable, Triton on CUDA when installed, else plain torch.
The kind also tells the loader how to store weights (`storage`), and `traced()` gives the variant a
compiled decode step is traced with (compiled.py): one-token forms that the compiler fuses into one pass
over the weights, which eagerly would materialize their products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from agent.backends.local import cpu_kernels
from agent.backends.local.experts import (
    experts_gathered,
    experts_grouped,
    experts_indexed,
    experts_looped,
    route,
)
from agent.backends.local.triton_moe import fused_moe_op, triton_available  # Triton loads lazily

KINDS = ("cpu-kernels", "triton", "torch")

# Up to this many tokens the CPU kernels beat torch's matmuls (they read each weight once for all tokens):
# oneDNN's bf16 matmul costs ~40 us per call below M=64, and a 32-token prefill of the `small` preset took
# 8.0 ms against 18.9 ms in bf16, 9.0 ms against 13.4 ms in fp32 (AMX dev box, 1 thread).
FEW_TOKENS = 32

# Up to this many bytes of chosen-expert weights per call, copying them (cache-resident) costs less than
# grouped_mm's per-expert overhead, which grows with the number of experts (E=32, bf16: ~2.5x slower).
GATHER_LIMIT_BYTES = 1 << 20

# The traced step multiplies-and-reduces the chosen experts' weights up to this many (token, expert) pairs.
INDEXED_MAX_PAIRS = 64


class CacheRows:
    """Which KV-cache row each sequence of a batch uses (model.forward's `rows`): as ints and as a tensor."""

    def __init__(self, ids: list[int], device: torch.device) -> None:
        self.ids = list(ids)
        self.tensor = torch.tensor(self.ids, device=device)


@dataclass(frozen=True)
class StoragePlan:
    """How the loader stores weights when its caller does not say (see loader.load_model)."""

    bf16_weights: bool = False  # an fp32 model keeps the checkpoint's bf16 matrices in bf16
    fp8_experts: bool = False  # FP8 expert weights stay FP8, with their block scales


class Ops(Protocol):
    """What model.py calls. Shapes: x [..., in], w [out, in]; q [B, heads, T, D] and the whole cache
    k/v [B, kv_heads, S, D], of which attention reads the first kv_len positions (all when None) under
    mask [T, S]; the MoE block takes x [N, H] and the layer's router and stacked experts.

    `attention_rows` is attention for a batch of sequences at different lengths: q [B, heads, T, D], the
    whole cache [R, kv_heads, S, D], sequence i in cache row rows.ids[i] at positions input_pos[i], reading
    its first kv_len[i] positions under masks[i]; it computes for each sequence what `attention` computes
    for it alone."""

    name: str
    storage: StoragePlan

    def linear(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor: ...

    def attention(self, q, k_cache, v_cache, input_pos, kv_len, mask, scale: float) -> torch.Tensor: ...

    def attention_rows(self, q, k_cache, v_cache, rows, input_pos, kv_len, masks, scale) -> torch.Tensor: ...

    def moe(self, x, gate, bias, w13, w2, top_k: int, scales) -> torch.Tensor: ...

    def traced(self) -> Ops: ...

    def c_shims(self) -> dict: ...


class TorchOps:
    """Plain PyTorch, eager."""

    name = "torch"
    storage = StoragePlan()

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        # On CUDA outside bf16, gathering the chosen experts beats grouped_mm at every size.
        self.always_gather = device.type == "cuda" and dtype != torch.bfloat16
        # An eager CPU prefill can afford the looped path's host-side row counts.
        self.loop_prefill = device.type == "cpu"

    def traced(self) -> Ops:
        return TracedTorchOps(self.device, self.dtype)

    def c_shims(self) -> dict:
        return {}

    def linear(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w if w.dtype == x.dtype else w.to(x.dtype))  # bf16 weights of an fp32 model: exact

    def attention(self, q, k_cache, v_cache, input_pos, kv_len, mask, scale):
        # Query head i reads KV head i // (heads / kv_heads): SDPA's enable_gqa grouping.
        k, v = k_cache[:, :, :kv_len], v_cache[:, :, :kv_len]
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1]
        )

    def attention_rows(self, q, k_cache, v_cache, rows, input_pos, kv_len, masks, scale):
        return attention_row_by_row(self, q, k_cache, v_cache, rows, input_pos, kv_len, masks, scale)

    def moe(self, x, gate, bias, w13, w2, top_k, scales):
        weights, idx = route(x, gate, bias, top_k)
        if scales is not None or w13.dtype != x.dtype:
            # FP8 or exactly-bf16 experts (loader's storage plan): widened one busy expert at a time.
            return experts_looped(x, weights, idx, w13, w2, scales)
        return self.experts(x, weights, idx, w13, w2)

    def experts(self, x, weights, idx, w13, w2):
        """The expert path for this many tokens (measurements in experts.py)."""
        if self.gathers(idx, w13, w2):
            return experts_gathered(x, weights, idx, w13, w2)
        if self.loop_prefill and x.shape[0] > 1:
            return experts_looped(x, weights, idx, w13, w2)  # prefill; decode keeps no host sync
        return experts_grouped(x, weights, idx, w13, w2)

    def gathers(self, idx, w13, w2) -> bool:
        gathered = idx.numel() * 3 * w2.shape[1] * w2.shape[2] * w13.element_size()
        return gathered <= GATHER_LIMIT_BYTES or self.always_gather


class TracedTorchOps(TorchOps):
    """Plain PyTorch as torch.compile and torch.export trace it: one token's projections, attention and
    experts in forms the compiler fuses (oneDNN's bf16 mat-vec, SDPA's CPU setup and grouped_mm's host
    sync cost more than the arithmetic at batch-1 decode)."""

    def traced(self) -> Ops:
        return self

    def linear(self, x, w):
        if x.shape[:-1].numel() == 1 and w.dtype != torch.float32:  # one pass over w, fused
            return (w * x.reshape(1, -1)).sum(-1).view(*x.shape[:-1], w.shape[0])
        return super().linear(x, w)

    def attention(self, q, k_cache, v_cache, input_pos, kv_len, mask, scale):
        if q.shape[0] * q.shape[2] == 1:
            k, v = k_cache[:, :, :kv_len], v_cache[:, :, :kv_len]
            return decode_attention(q, k, v, mask, scale)
        return super().attention(q, k_cache, v_cache, input_pos, kv_len, mask, scale)

    def experts(self, x, weights, idx, w13, w2):
        if idx.numel() <= INDEXED_MAX_PAIRS:
            return experts_indexed(x, weights, idx, w13, w2)
        if self.gathers(idx, w13, w2):
            return experts_gathered(x, weights, idx, w13, w2)
        return experts_grouped(x, weights, idx, w13, w2)  # no host-side counts in a graph


def attention_row_by_row(ops: Ops, q, k_cache, v_cache, rows, input_pos, kv_len, masks, scale):
    """`attention_rows` as one `attention` call per sequence, each on its own cache row."""
    ys = [
        ops.attention(
            q[i : i + 1], k_cache[r : r + 1], v_cache[r : r + 1], input_pos[i], kv_len[i], masks[i], scale
        )
        for i, r in enumerate(rows.ids)
    ]
    return torch.cat(ys) if len(ys) > 1 else ys[0]


def decode_attention(q, k, v, mask, scale):
    """One query token as plain math the compiler fuses (SDPA's CPU kernel costs tens of microseconds of
    setup per call). q [1, H, 1, D], k/v [1, KV, S, D], mask [1, S]."""
    kv_heads, group = k.shape[1], q.shape[1] // k.shape[1]
    qg = q.view(kv_heads, group, 1, q.shape[-1]).float()
    scores = (qg * k.view(kv_heads, 1, -1, k.shape[-1]).float()).sum(-1) * scale  # [KV, G, S]
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    y = (probs[..., None] * v.view(kv_heads, 1, -1, v.shape[-1]).float()).sum(-2)  # [KV, G, D]
    return y.to(q.dtype).view(1, q.shape[1], 1, q.shape[-1])


class CpuKernelOps:
    """Our C++ kernels for up to FEW_TOKENS tokens (one for attention): the projections, one-token
    attention that reads only the cache rows the token may see, and the whole MoE block (routing and
    experts in one call, on fp32, bf16 or FP8 experts). `torch` runs the rest."""

    name = "cpu-kernels"

    def __init__(self, torch_ops: TorchOps) -> None:
        self.torch = torch_ops
        # The kernels widen bf16 weights under fp32 activations as they read, and decode FP8 experts.
        self.storage = StoragePlan(bf16_weights=torch_ops.dtype == torch.float32, fp8_experts=True)

    def traced(self) -> Ops:
        return CpuKernelOps(self.torch.traced())

    def c_shims(self) -> dict:
        return cpu_kernels.c_shims()

    def linear(self, x, w):
        if x.shape[:-1].numel() <= FEW_TOKENS:
            return torch.ops.mmx.matvec(x, w)
        return self.torch.linear(x, w)

    def attention(self, q, k_cache, v_cache, input_pos, kv_len, mask, scale):
        if q.shape[0] * q.shape[2] == 1:
            return torch.ops.mmx.decode_attention(q, k_cache, v_cache, input_pos, scale)
        return self.torch.attention(q, k_cache, v_cache, input_pos, kv_len, mask, scale)

    def attention_rows(self, q, k_cache, v_cache, rows, input_pos, kv_len, masks, scale):
        if q.shape[2] == 1:  # one token per sequence: one call, the same bits per row as `attention`
            return torch.ops.mmx.decode_attention_rows(
                q, k_cache, v_cache, rows.tensor, input_pos.view(-1), scale
            )
        return attention_row_by_row(self, q, k_cache, v_cache, rows, input_pos, kv_len, masks, scale)

    def moe(self, x, gate, bias, w13, w2, top_k, scales):
        if x.shape[0] <= FEW_TOKENS:
            return torch.ops.mmx.moe_decode(x, gate, bias, w13, w2, top_k, *(scales or ()))
        return self.torch.moe(x, gate, bias, w13, w2, top_k, scales)


class TritonOps:
    """The fused Triton expert kernels as one opaque torch op (a compiled graph keeps it whole, a CUDA
    graph captures it); `torch` runs the projections, attention, and experts stored wider or narrower
    than the activations."""

    name = "triton"
    storage = StoragePlan()

    def __init__(self, torch_ops: TorchOps) -> None:
        self.torch = torch_ops

    def traced(self) -> Ops:
        return TritonOps(self.torch.traced())

    def c_shims(self) -> dict:
        return {}

    def linear(self, x, w):
        return self.torch.linear(x, w)

    def attention(self, q, k_cache, v_cache, input_pos, kv_len, mask, scale):
        return self.torch.attention(q, k_cache, v_cache, input_pos, kv_len, mask, scale)

    def attention_rows(self, q, k_cache, v_cache, rows, input_pos, kv_len, masks, scale):
        return self.torch.attention_rows(q, k_cache, v_cache, rows, input_pos, kv_len, masks, scale)

    def moe(self, x, gate, bias, w13, w2, top_k, scales):
        if scales is not None or w13.dtype != x.dtype:
            return self.torch.moe(x, gate, bias, w13, w2, top_k, scales)
        weights, idx = route(x, gate, bias, top_k)
        return fused_moe_op(x, weights, idx, w13, w2)


def select_ops(device: str | torch.device, dtype: torch.dtype, kind: str | None = None) -> Ops:
    """The Ops for a model on `device` in `dtype`: `kind` (one of KINDS) or, when None, the fastest that
    runs there. Asking for the CPU kernels builds them (once per machine)."""
    device = torch.device(device)
    plain = TorchOps(device, dtype)
    if kind is None:
        if device.type == "cpu" and dtype in cpu_kernels.DTYPES and cpu_kernels.active():
            return CpuKernelOps(plain)
        if device.type == "cuda" and triton_available():
            return TritonOps(plain)
        return plain
    if kind == "torch":
        return plain
    if kind == "cpu-kernels":
        if device.type != "cpu" or dtype not in cpu_kernels.DTYPES:
            raise ValueError(f"the CPU kernels run float32 or bfloat16 on the CPU, not {dtype} on {device}")
        if not cpu_kernels.available():
            raise RuntimeError("the CPU kernels are unavailable (see the warning above)")
        return CpuKernelOps(plain)
    if kind == "triton":
        if not triton_available():
            raise RuntimeError("Triton is not installed")
        return TritonOps(plain)
    raise ValueError(f"ops {kind!r}: choose one of {', '.join(KINDS)}")
