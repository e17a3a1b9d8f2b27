"""Fused routed-expert layer on the GPU with Triton, in bf16/fp16/fp32 or FP8 with 128x128 block scales.

`fused_moe` takes what the torch expert paths take (activations, renormalised fp32 routing weights, expert
ids, the stacked `w13` [E, 2I, H] and `w2` [E, H, I]) plus optional FP8 block scales, and picks a path:

- decode (at most DECODE_MAX_PAIRS token-expert pairs): two mat-vec kernels over the chosen experts only,
  the second one applying the routing weights and summing each token's top-k rows. No sort, no
  padding, two buffers of fixed size.
- grouped (prefill, batches): pairs grouped by expert in padded blocks on the device (moe_align.py),
  a grouped GEMM for gate+up with SiLU-and-product fused, a grouped GEMM for down with the routing
  weights applied, then the top-k sum. With FP8 weights it can also quantise the activations per token
  in 128-column groups and run FP8 x FP8 tensor-core dots (`fp8_activations`).

`fused_moe_op` is the same call as one opaque torch op: `ops.TritonOps` uses it, so
torch.compile(fullgraph=True) keeps it whole and a CUDA graph captures it.

Neither path reads a device value on the host or allocates by a data-dependent size, so a decode step
can be captured in a CUDA graph. Importing this module does not import Triton; the kernels load on first
use, which lets `TRITON_INTERPRET=1` (set before that) run them on the CPU for tests.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, replace

import torch

DECODE_MAX_PAIRS = 64  # e.g. 8 tokens at top-8; above it the grouped path reads each expert once


@dataclass(frozen=True)
class KernelConfig:
    """Tile sizes. block_m is used by the grouped path only; block_k must divide the scale block."""

    block_m: int = 64
    block_n: int = 64
    block_k: int = 64
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3


_HAS_TRITON = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    return _HAS_TRITON


def _kernels():
    # Looked up on every call (a dict hit), so a test can stand in for the launcher (test_sm90_compile.py).
    return importlib.import_module("agent.backends.local.moe_kernels")


def decode_config(fp8: bool) -> KernelConfig:
    """Untuned starting points for an H100/H200 (benchmarks/gpu_moe.py --sweep compares others)."""
    # FP8 K tiles stop at the 128-wide scale block, so FP8 takes more rows per tile instead.
    return KernelConfig(block_n=64 if fp8 else 32, block_k=128 if fp8 else 256, num_warps=4, num_stages=3)


def grouped_config(num_pairs: int, num_experts: int, fp8: bool) -> KernelConfig:
    rows_per_expert = num_pairs / num_experts
    if rows_per_expert <= 16:  # decode-like batches: few rows per expert, memory bound
        return KernelConfig(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3)
    if rows_per_expert <= 64:
        return KernelConfig(block_m=32, block_n=64, block_k=128, group_m=4, num_warps=4, num_stages=3)
    return KernelConfig(
        block_m=64, block_n=128, block_k=128 if fp8 else 64, group_m=8, num_warps=8, num_stages=3
    )


def _check(x, weights, idx, w13, w2, w13_scale, w2_scale, block_shape) -> None:
    e, two_i, h = w13.shape
    if x.dim() != 2 or x.shape[1] != h or w2.shape != (e, h, two_i // 2) or two_i % 2:
        raise ValueError(
            f"shapes do not fit: x {tuple(x.shape)}, w13 {tuple(w13.shape)}, w2 {tuple(w2.shape)}"
        )
    if idx.shape != weights.shape or idx.shape[0] != x.shape[0]:
        raise ValueError(f"routing shapes {tuple(weights.shape)}, {tuple(idx.shape)} for {x.shape[0]} tokens")
    if (w13_scale is None) != (w2_scale is None):
        raise ValueError("give block scales for both w13 and w2, or for neither")
    if w13_scale is None and w13.element_size() == 1:
        raise ValueError(f"{w13.dtype} expert weights need their block scales (w13_scale, w2_scale)")
    if w13_scale is None:
        return
    bn, bk = block_shape
    for name, w, s in (("w13", w13, w13_scale), ("w2", w2, w2_scale)):
        want = (e, -(-w.shape[1] // bn), -(-w.shape[2] // bk))
        if tuple(s.shape) != want:
            raise ValueError(
                f"{name}_scale: expected {list(want)} for {block_shape} blocks, got {list(s.shape)}"
            )


def fused_moe(
    x: torch.Tensor,
    weights: torch.Tensor,
    idx: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    *,
    w13_scale: torch.Tensor | None = None,
    w2_scale: torch.Tensor | None = None,
    block_shape: tuple[int, int] = (128, 128),
    path: str = "auto",
    config: KernelConfig | None = None,
    fp8_activations: bool = False,
) -> torch.Tensor:
    """x [N, H]; weights fp32 / idx [N, k]; w13 [E, 2I, H] (gate rows, then up); w2 [E, H, I] -> [N, H].

    With scales, w13/w2 hold FP8 e4m3 values (or, in the interpreter, any float holding them) and
    `*_scale` [E, ceil(out / bn), ceil(in / bk)] multiplies each (bn, bk) = block_shape block of the
    stacked matrices; checkpoint w1/w3 scales stack the same way when I is a multiple of bn.
    path: "auto", "decode" or "grouped"; config overrides the tile sizes. fp8_activations (grouped path,
    FP8 weights): quantise the activations per token in groups of bk columns and run FP8 x FP8 dots,
    twice the tensor-core rate of bf16 for prefill, at FP8's precision; decode ignores it (it is bound
    by reading weights, not by arithmetic).
    """
    _check(x, weights, idx, w13, w2, w13_scale, w2_scale, block_shape)
    if path == "auto":
        path = "decode" if idx.numel() <= DECODE_MAX_PAIRS else "grouped"
    if path not in ("decode", "grouped"):
        raise ValueError(f"path {path!r}: choose auto, decode or grouped")
    fp8 = w13_scale is not None
    if config is None:
        config = decode_config(fp8) if path == "decode" else grouped_config(idx.numel(), w13.shape[0], fp8)
    if fp8:
        # A K tile must lie inside one scale block (one scale per output row per tile).
        block_k = min(config.block_k, block_shape[1])
        if block_shape[1] % block_k or block_k & (block_k - 1):
            raise ValueError(
                f"block_k {block_k} must be a power of two dividing the scale block {block_shape[1]}"
            )
        config = replace(config, block_k=block_k)
    if idx.numel() == 0:
        return torch.zeros_like(x)
    x = x.contiguous()
    idx = idx.reshape(-1).contiguous()
    rw = weights.reshape(-1).to(torch.float32).contiguous()
    if path == "decode":
        return _decode(x, rw, idx, weights.shape[1], w13, w2, w13_scale, w2_scale, block_shape, config)
    a_fp8 = fp8_activations and fp8
    return _grouped(x, rw, idx, weights.shape[1], w13, w2, w13_scale, w2_scale, block_shape, config, a_fp8)


# An explicit schema: inferring it from this module's string annotations differs across torch versions.
@torch.library.custom_op(
    "mmx_agent::fused_moe",
    mutates_args=(),
    schema="(Tensor x, Tensor weights, Tensor idx, Tensor w13, Tensor w2, Tensor? w13_scale=None, "
    "Tensor? w2_scale=None, int block_n=128, int block_k=128) -> Tensor",
)
def fused_moe_op(
    x: torch.Tensor,
    weights: torch.Tensor,
    idx: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    w13_scale: torch.Tensor | None = None,
    w2_scale: torch.Tensor | None = None,
    block_n: int = 128,
    block_k: int = 128,
) -> torch.Tensor:
    """`fused_moe` with its default path and tiles as one opaque torch op: torch.compile (fullgraph,
    reduce-overhead) keeps it in its graph instead of tracing the launch code, and CUDA graphs capture it."""
    return fused_moe(
        x, weights, idx, w13, w2, w13_scale=w13_scale, w2_scale=w2_scale, block_shape=(block_n, block_k)
    )


@fused_moe_op.register_fake
def _(x, weights, idx, w13, w2, w13_scale=None, w2_scale=None, block_n=128, block_k=128):
    return torch.empty_like(x)


def _scale_args(w: torch.Tensor, s: torch.Tensor | None, block_shape: tuple[int, int]) -> dict:
    if s is None:  # never read (HAS_SCALE is a compile-time False); any pointer will do
        return dict(s_ptr=w, stride_se=0, stride_sn=0, stride_sk=0, HAS_SCALE=False, SCALE_N=1, SCALE_K=1)
    return dict(
        s_ptr=s,
        stride_se=s.stride(0),
        stride_sn=s.stride(1),
        stride_sk=s.stride(2),
        HAS_SCALE=True,
        SCALE_N=block_shape[0],
        SCALE_K=block_shape[1],
    )


def _weight_args(w: torch.Tensor) -> dict:
    return dict(w_ptr=w, stride_we=w.stride(0), stride_wn=w.stride(1), stride_wk=w.stride(2))


def _launch_args(c: KernelConfig) -> dict:
    return dict(num_warps=c.num_warps, num_stages=c.num_stages)


def _decode(x, rw, idx, top_k, w13, w2, s13, s2, block_shape, c: KernelConfig) -> torch.Tensor:
    k = _kernels()
    n, hidden = x.shape
    inter = w2.shape[2]
    pairs = idx.numel()
    h = torch.empty(pairs, inter, dtype=x.dtype, device=x.device)
    k.gemv_gate_up[(pairs, _cdiv(inter, c.block_n))](
        x_ptr=x, idx_ptr=idx, out_ptr=h, INTER=inter, HIDDEN=hidden, stride_xm=x.stride(0),
        stride_om=h.stride(0), TOP_K=top_k, BLOCK_N=c.block_n, BLOCK_K=c.block_k,
        **_weight_args(w13), **_scale_args(w13, s13, block_shape), **_launch_args(c),
    )  # fmt: skip
    out = torch.empty(n, hidden, dtype=x.dtype, device=x.device)
    # The down kernel reads all top-k experts per step: as many rows as one gate tile in all.
    k_pow2 = 1 << (top_k - 1).bit_length()
    down_n = max(c.block_n // k_pow2, 1)
    k.gemv_down_reduce[(n, _cdiv(hidden, down_n))](
        h_ptr=h, idx_ptr=idx, rw_ptr=rw, out_ptr=out, HIDDEN=hidden, INTER=inter, stride_hm=h.stride(0),
        stride_om=out.stride(0), TOP_K=top_k, TOP_K_POW2=k_pow2, BLOCK_N=down_n, BLOCK_K=c.block_k,
        **_weight_args(w2), **_scale_args(w2, s2, block_shape), **_launch_args(c),
    )  # fmt: skip
    return out


def _activation_args(name: str, a: torch.Tensor, a_fp8: bool, group: int, weights: torch.Tensor) -> dict:
    """The activation operand: as is, or FP8 per token in groups of `group` columns (the weights' K
    scale block, so one activation scale per row per K tile). Where the weights are FP8 values in a
    wider dtype (the interpreter), so are the activations."""
    if not a_fp8:  # scales never read (A_SCALED is a compile-time False)
        return {f"{name}_ptr": a, f"{name}s_ptr": a, f"stride_{name}m": a.stride(0), f"stride_{name}sm": 0}
    q, s = quantize_fp8_blocks(a[None], (1, group))
    q, s = q[0].to(weights.dtype), s[0]
    return {
        f"{name}_ptr": q,
        f"{name}s_ptr": s,
        f"stride_{name}m": q.stride(0),
        f"stride_{name}sm": s.stride(0),
    }


def _grouped(x, rw, idx, top_k, w13, w2, s13, s2, block_shape, c: KernelConfig, a_fp8) -> torch.Tensor:
    from agent.backends.local.moe_align import align_pairs

    k = _kernels()
    n, hidden = x.shape
    inter = w2.shape[2]
    pairs = idx.numel()
    al = align_pairs(idx, w13.shape[0], c.block_m)
    rows_max = al.sorted_pairs.numel()
    common = dict(
        sorted_pairs_ptr=al.sorted_pairs, block_experts_ptr=al.block_experts, num_padded_ptr=al.num_padded,
        num_pairs=pairs, num_rows_max=rows_max, BLOCK_M=c.block_m, BLOCK_N=c.block_n, BLOCK_K=c.block_k,
        GROUP_M=c.group_m, A_SCALED=a_fp8, DOT_PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
        **_launch_args(c),
    )  # fmt: skip
    num_m = _cdiv(rows_max, c.block_m)
    h = torch.empty(pairs, inter, dtype=x.dtype, device=x.device)
    k.grouped_gate_up[(num_m * _cdiv(inter, c.block_n),)](
        out_ptr=h, INTER=inter, HIDDEN=hidden, stride_om=h.stride(0), TOP_K=top_k,
        **_activation_args("x", x, a_fp8, block_shape[1], w13),
        **_weight_args(w13), **_scale_args(w13, s13, block_shape), **common,
    )  # fmt: skip
    y = torch.empty(pairs, hidden, dtype=x.dtype, device=x.device)
    k.grouped_down[(num_m * _cdiv(hidden, c.block_n),)](
        rw_ptr=rw, out_ptr=y, HIDDEN=hidden, INTER=inter, stride_om=y.stride(0),
        **_activation_args("h", h, a_fp8, block_shape[1], w2),
        **_weight_args(w2), **_scale_args(w2, s2, block_shape), **common,
    )  # fmt: skip
    if top_k == 1:
        return y
    return y.view(n, top_k, hidden).sum(1, dtype=torch.float32).to(x.dtype)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def quantize_fp8_blocks(
    w: torch.Tensor, block_shape: tuple[int, int] = (128, 128)
) -> tuple[torch.Tensor, torch.Tensor]:
    """[E, out, in] float -> (FP8 e4m3 values, fp32 scales [E, ceil(out/bn), ceil(in/bk)]) such that
    W ~= q * scale per block, the checkpoint convention; block (1, g) on [1, tokens, K] gives per-token
    groups. Makes FP8 experts for tests and benchmarks (the interpreter runs on `q.float()` with the
    same scales) and the FP8 activations."""
    e, out, inp = w.shape
    bn, bk = block_shape
    pad = torch.nn.functional.pad(w.float(), (0, -inp % bk, 0, -out % bn))
    blocks = pad.view(e, pad.shape[1] // bn, bn, pad.shape[2] // bk, bk)
    scale = blocks.abs().amax(dim=(2, 4)).clamp(min=1e-12) / torch.finfo(torch.float8_e4m3fn).max
    q = (blocks / scale[:, :, None, :, None]).to(torch.float8_e4m3fn)
    return q.view(pad.shape)[:, :out, :inp].contiguous(), scale
