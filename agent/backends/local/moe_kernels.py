"""Triton kernels for the routed experts: y = sum_j w_j * W2_e (silu(W1_e x) * W3_e x).

Weights are stacked [E, out, in] like the loader's: `w13` holds the gate rows (w1) then the up rows
(w3), so gate row n and up row n are `inter` rows apart and one program computes both tiles from the
same activation loads. Weights are either in the activation dtype or FP8 with block scales `s`
[E, ceil(out / SCALE_N), ceil(in / SCALE_K)] (a multiplier, despite the checkpoint's `weight_scale_inv`
name): W[r, c] = q[r, c] * s[r // SCALE_N, c // SCALE_K]. A K tile never straddles two scale blocks
(SCALE_K % BLOCK_K == 0, checked by the caller), so a tile's partial dot product is multiplied by one
scale per output row, `s[n // SCALE_N, k0 // SCALE_K]`, before it is added to the accumulator: the
row part of that index is fixed per program (pointers set up before the K loop), the column part
advances with k0.

Two families:
- `gemv_*` (decode, a handful of tokens): one program per (pair or token, column tile), mat-vec by
  multiply-and-sum; reads only the chosen experts' rows and needs no sorting at all.
- `grouped_*` (prefill, batches): pairs grouped by expert in padded blocks (moe_align.py); each program
  gathers its block's rows from the activations inside the GEMM (nothing is permuted in memory) and
  runs a tensor-core `tl.dot` against one expert's weight tile.
Expert offsets are widened to int64 first: E * out * in passes 2**31 at real size.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def gemv_gate_up(
    x_ptr, w_ptr, s_ptr, idx_ptr, out_ptr,
    stride_xm, stride_we, stride_wn, stride_wk, stride_se, stride_sn, stride_sk, stride_om,
    INTER: tl.constexpr, HIDDEN: tl.constexpr, TOP_K: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, HAS_SCALE: tl.constexpr, SCALE_N: tl.constexpr, SCALE_K: tl.constexpr,
):  # fmt: skip
    """out[pair, n] = silu(gate . x[token]) * (up . x[token]) for one pair's expert."""
    pair = tl.program_id(0).to(tl.int64)
    expert = tl.load(idx_ptr + pair).to(tl.int64)
    token = pair // TOP_K
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    n_mask = offs_n < INTER
    gate_ptrs = w_ptr + expert * stride_we + offs_n[:, None] * stride_wn + offs_k[None, :] * stride_wk
    up_ptrs = gate_ptrs + INTER * stride_wn
    gate_s_ptrs = s_ptr + expert * stride_se + (offs_n // SCALE_N) * stride_sn
    up_s_ptrs = s_ptr + expert * stride_se + ((offs_n + INTER) // SCALE_N) * stride_sn
    acc_g = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc_u = tl.zeros([BLOCK_N], dtype=tl.float32)
    for k0 in range(0, HIDDEN, BLOCK_K):
        k_mask = offs_k < HIDDEN - k0
        a = tl.load(x_ptr + token * stride_xm + k0 + offs_k, mask=k_mask, other=0.0).to(tl.float32)
        w_mask = n_mask[:, None] & k_mask[None, :]
        g = tl.sum(tl.load(gate_ptrs, mask=w_mask, other=0.0).to(tl.float32) * a[None, :], axis=1)
        u = tl.sum(tl.load(up_ptrs, mask=w_mask, other=0.0).to(tl.float32) * a[None, :], axis=1)
        if HAS_SCALE:
            g *= tl.load(gate_s_ptrs + (k0 // SCALE_K) * stride_sk, mask=n_mask, other=0.0)
            u *= tl.load(up_s_ptrs + (k0 // SCALE_K) * stride_sk, mask=n_mask, other=0.0)
        acc_g += g
        acc_u += u
        gate_ptrs += BLOCK_K * stride_wk
        up_ptrs += BLOCK_K * stride_wk
    h = acc_g * tl.sigmoid(acc_g) * acc_u
    tl.store(out_ptr + pair * stride_om + offs_n, h.to(out_ptr.dtype.element_ty), mask=n_mask)


@triton.jit
def gemv_down_reduce(
    h_ptr, w_ptr, s_ptr, idx_ptr, rw_ptr, out_ptr,
    stride_hm, stride_we, stride_wn, stride_wk, stride_se, stride_sn, stride_sk, stride_om,
    HIDDEN: tl.constexpr, INTER: tl.constexpr, TOP_K: tl.constexpr, TOP_K_POW2: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    HAS_SCALE: tl.constexpr, SCALE_N: tl.constexpr, SCALE_K: tl.constexpr,
):  # fmt: skip
    """out[token, n] = sum_j rw[token, j] * (W2_{e_j} h[token * TOP_K + j])[n]: the down projection,
    the routing weights and the top-k reduction in one pass, so decode needs no [pairs, HIDDEN] buffer.
    The K loop loads the same rows of all the token's experts at once ([TOP_K, BLOCK_N, BLOCK_K]), which
    keeps many bytes in flight even when HIDDEN / BLOCK_N programs are fewer than the SMs' appetite."""
    token = tl.program_id(0).to(tl.int64)
    offs_j = tl.arange(0, TOP_K_POW2)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    j_mask = offs_j < TOP_K
    n_mask = offs_n < HIDDEN
    pairs = token * TOP_K + offs_j
    experts = tl.load(idx_ptr + pairs, mask=j_mask, other=0).to(tl.int64)
    rw = tl.load(rw_ptr + pairs, mask=j_mask, other=0.0)
    w_ptrs = (
        w_ptr
        + experts[:, None, None] * stride_we
        + offs_n[None, :, None] * stride_wn
        + offs_k[None, None, :] * stride_wk
    )
    a_ptrs = h_ptr + pairs[:, None] * stride_hm + offs_k[None, :]
    jn_mask = j_mask[:, None] & n_mask[None, :]
    s_ptrs = s_ptr + experts[:, None] * stride_se + (offs_n // SCALE_N)[None, :] * stride_sn
    acc = tl.zeros([TOP_K_POW2, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, INTER, BLOCK_K):
        k_mask = offs_k < INTER - k0
        a = tl.load(a_ptrs, mask=j_mask[:, None] & k_mask[None, :], other=0.0).to(tl.float32)
        w = tl.load(w_ptrs, mask=jn_mask[:, :, None] & k_mask[None, None, :], other=0.0)
        part = tl.sum(w.to(tl.float32) * a[:, None, :], axis=2)
        if HAS_SCALE:
            part *= tl.load(s_ptrs + (k0 // SCALE_K) * stride_sk, mask=jn_mask, other=0.0)
        acc += part
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wk
    total = tl.sum(acc * rw[:, None], axis=0)
    tl.store(out_ptr + token * stride_om + offs_n, total.to(out_ptr.dtype.element_ty), mask=n_mask)


@triton.jit
def _block_tile(num_rows_max, n_cols, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """Program id -> (row block, column tile), walking GROUP_M row blocks per column sweep so that
    consecutive programs reuse the same weight tiles from L2 (a block's neighbours share its expert)."""
    pid = tl.program_id(0)
    num_m = tl.cdiv(num_rows_max, BLOCK_M)
    num_n = tl.cdiv(n_cols, BLOCK_N)
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_size
    pid_n = (pid % per_group) // group_size
    return pid_m, pid_n


@triton.jit
def grouped_gate_up(
    x_ptr, xs_ptr, w_ptr, s_ptr, out_ptr, sorted_pairs_ptr, block_experts_ptr, num_padded_ptr,
    num_pairs, num_rows_max,
    stride_xm, stride_xsm, stride_we, stride_wn, stride_wk, stride_se, stride_sn, stride_sk, stride_om,
    INTER: tl.constexpr, HIDDEN: tl.constexpr, TOP_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, HAS_SCALE: tl.constexpr, SCALE_N: tl.constexpr, SCALE_K: tl.constexpr,
    A_SCALED: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """out[pair, n] = silu(x[token] . gate_n) * (x[token] . up_n) for a block of one expert's pairs,
    activation rows gathered by token id inside the K loop. With A_SCALED, x holds FP8 values with one
    scale per token per SCALE_K columns (`xs`), so the dot runs FP8 x FP8 and each row gets its scale."""
    pid_m, pid_n = _block_tile(num_rows_max, INTER, BLOCK_M, BLOCK_N, GROUP_M)
    if pid_m * BLOCK_M >= tl.load(num_padded_ptr):
        return  # past the routed rows: the buffers are sized for the worst case
    expert = tl.load(block_experts_ptr + pid_m).to(tl.int64)
    pairs = tl.load(sorted_pairs_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    row_mask = pairs < num_pairs  # padding rows carry the sentinel pair id num_pairs
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    n_mask = offs_n < INTER
    a_ptrs = x_ptr + (pairs // TOP_K)[:, None] * stride_xm + offs_k[None, :]
    a_s_ptrs = xs_ptr + (pairs // TOP_K) * stride_xsm
    gate_ptrs = w_ptr + expert * stride_we + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk
    up_ptrs = gate_ptrs + INTER * stride_wn
    gate_s_ptrs = s_ptr + expert * stride_se + (offs_n // SCALE_N) * stride_sn
    up_s_ptrs = s_ptr + expert * stride_se + ((offs_n + INTER) // SCALE_N) * stride_sn
    acc_g = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_u = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, HIDDEN, BLOCK_K):
        k_mask = offs_k < HIDDEN - k0
        a = tl.load(a_ptrs, mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        w_mask = k_mask[:, None] & n_mask[None, :]
        # FP8 weights are widened to the activation dtype here (a no-op for FP8 activations).
        g_w = tl.load(gate_ptrs, mask=w_mask, other=0.0).to(a.dtype)
        u_w = tl.load(up_ptrs, mask=w_mask, other=0.0).to(a.dtype)
        g = tl.dot(a, g_w, input_precision=DOT_PRECISION)
        u = tl.dot(a, u_w, input_precision=DOT_PRECISION)
        if HAS_SCALE:
            g *= tl.load(gate_s_ptrs + (k0 // SCALE_K) * stride_sk, mask=n_mask, other=0.0)[None, :]
            u *= tl.load(up_s_ptrs + (k0 // SCALE_K) * stride_sk, mask=n_mask, other=0.0)[None, :]
        if A_SCALED:
            a_s = tl.load(a_s_ptrs + k0 // SCALE_K, mask=row_mask, other=0.0)[:, None]
            g *= a_s
            u *= a_s
        acc_g += g
        acc_u += u
        a_ptrs += BLOCK_K
        gate_ptrs += BLOCK_K * stride_wk
        up_ptrs += BLOCK_K * stride_wk
    h = acc_g * tl.sigmoid(acc_g) * acc_u
    out_ptrs = out_ptr + pairs[:, None] * stride_om + offs_n[None, :]
    tl.store(out_ptrs, h.to(out_ptr.dtype.element_ty), mask=row_mask[:, None] & n_mask[None, :])


@triton.jit
def grouped_down(
    h_ptr, hs_ptr, w_ptr, s_ptr, rw_ptr, out_ptr, sorted_pairs_ptr, block_experts_ptr, num_padded_ptr,
    num_pairs, num_rows_max,
    stride_hm, stride_hsm, stride_we, stride_wn, stride_wk, stride_se, stride_sn, stride_sk, stride_om,
    HIDDEN: tl.constexpr, INTER: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, HAS_SCALE: tl.constexpr, SCALE_N: tl.constexpr, SCALE_K: tl.constexpr,
    A_SCALED: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """out[pair, n] = rw[pair] * (W2_e h[pair])[n] for a block of one expert's pairs; the caller sums
    each token's top-k rows. A_SCALED as in grouped_gate_up, with one scale row per pair (`hs`)."""
    pid_m, pid_n = _block_tile(num_rows_max, HIDDEN, BLOCK_M, BLOCK_N, GROUP_M)
    if pid_m * BLOCK_M >= tl.load(num_padded_ptr):
        return
    expert = tl.load(block_experts_ptr + pid_m).to(tl.int64)
    pairs = tl.load(sorted_pairs_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    row_mask = pairs < num_pairs
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    n_mask = offs_n < HIDDEN
    a_ptrs = h_ptr + pairs[:, None] * stride_hm + offs_k[None, :]
    a_s_ptrs = hs_ptr + pairs * stride_hsm
    w_ptrs = w_ptr + expert * stride_we + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk
    s_ptrs = s_ptr + expert * stride_se + (offs_n // SCALE_N) * stride_sn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, INTER, BLOCK_K):
        k_mask = offs_k < INTER - k0
        a = tl.load(a_ptrs, mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_mask[:, None] & n_mask[None, :], other=0.0).to(a.dtype)
        part = tl.dot(a, w, input_precision=DOT_PRECISION)
        if HAS_SCALE:
            part *= tl.load(s_ptrs + (k0 // SCALE_K) * stride_sk, mask=n_mask, other=0.0)[None, :]
        if A_SCALED:
            part *= tl.load(a_s_ptrs + k0 // SCALE_K, mask=row_mask, other=0.0)[:, None]
        acc += part
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wk
    acc *= tl.load(rw_ptr + pairs, mask=row_mask, other=0.0)[:, None]
    out_ptrs = out_ptr + pairs[:, None] * stride_om + offs_n[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=row_mask[:, None] & n_mask[None, :])
