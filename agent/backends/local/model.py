"""The MiniMax-M2 network in one readable file (shared/docs/m2-model.md is its spec).

Per layer: pre-norm attention with full-width QK-norm before RoPE, partial rotate-half RoPE and GQA; then
a sigmoid-routed mixture of SwiGLU experts. A static KV cache is written at `input_pos`; the forward pass
reads nothing back to the host, so a decode step can be graph-captured.

At batch-1 decode the cost on CPU is the number of ops and the rate at which weights stream in, not the
arithmetic. So weights are plain Parameters (no nn.Linear/nn.Module per projection), q and k share one
RoPE call, no-op dtype casts are skipped, and on the CPU a few tokens (decode, short prefill chunks) go
through our C++ kernels (cpu_kernels.py): the projections, the whole MoE block, and one-token attention.
`Generator(compile=True)` compiles the decode step around those kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agent.backends.local import cpu_kernels
from agent.backends.local.config import ModelArgs
from agent.backends.local.experts import experts_looped, route, run_experts


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Statistics in fp32, cast back, then the learned weight (MiniMax's and transformers' order).
    torch's rms_norm computes exactly that (bit for bit, fp32 and bf16) in one call."""
    return F.rms_norm(x, (x.shape[-1],), eps=eps) * weight


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """F.linear, except for one token: on the CPU our mat-vec kernel (cpu_kernels.py); elsewhere, for 16-bit
    weights in a compiled graph, a multiply-and-reduce that the compiler fuses into one pass over w
    (oneDNN's bf16 mat-vec is several times slower than either)."""
    if cpu_kernels.usable(x.shape[:-1].numel(), x, w):
        return torch.ops.mmx.matvec(x, w)
    if x.shape[:-1].numel() == 1 and w.dtype != torch.float32 and torch.compiler.is_compiling():
        return (w * x.reshape(1, -1)).sum(-1).view(*x.shape[:-1], w.shape[0])
    return F.linear(x, w if w.dtype == x.dtype else w.to(x.dtype))  # bf16 weights of an fp32 model: exact


def rope_tables(args: ModelArgs, max_seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables for rope(x) = x * cos + swap_halves(x) * sin over whole heads.

    Within the first rotary_dim dims, dim j pairs with j + rotary_dim/2 (rotate-half), inv_freq[j] =
    theta^(-2j/rotary_dim); `sin` carries rotate-half's minus sign. The remaining dims pass through:
    cos = 1, sin = 0 there."""
    rd, hd = args.rotary_dim, args.head_dim
    inv_freq = 1.0 / (args.rope_theta ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd))
    freqs = torch.arange(max_seq_len, dtype=torch.float32)[:, None] * inv_freq[None, :]
    cos, sin = torch.ones(max_seq_len, hd), torch.zeros(max_seq_len, hd)
    cos[:, :rd] = torch.cat((freqs, freqs), dim=-1).cos()
    sin[:, :rd] = torch.cat((-freqs.sin(), freqs.sin()), dim=-1)
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int) -> torch.Tensor:
    """x [B, T, heads, head_dim]; cos/sin [T, 1, head_dim] for these positions. The two rotary halves
    swap places by slicing (not a gather: the compiler vectorizes slices, not index lookups)."""
    half = rotary_dim // 2
    swapped = torch.cat((x[..., half:rotary_dim], x[..., :half], x[..., rotary_dim:]), dim=-1)
    return torch.addcmul(x * cos, swapped, sin)


def decode_attention(q, k, v, mask, scale):
    """One query token in a compiled graph: plain math the compiler fuses (SDPA's CPU kernel costs tens of
    microseconds of setup per call). q [1, H, 1, D], k/v [1, KV, S, D], mask [1, S]."""
    kv_heads, group = k.shape[1], q.shape[1] // k.shape[1]
    qg = q.view(kv_heads, group, 1, q.shape[-1]).float()
    scores = (qg * k.view(kv_heads, 1, -1, k.shape[-1]).float()).sum(-1) * scale  # [KV, G, S]
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    y = (probs[..., None] * v.view(kv_heads, 1, -1, v.shape[-1]).float()).sum(-2)  # [KV, G, D]
    return y.to(q.dtype).view(1, q.shape[1], 1, q.shape[-1])


class KVCache(nn.Module):
    def __init__(self, batch: int, kv_heads: int, max_seq_len: int, head_dim: int, dtype, device) -> None:
        super().__init__()
        shape = (batch, kv_heads, max_seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_len: int | None):
        """k, v [B, kv_heads, T, head_dim] written at positions input_pos [T]; returns the first kv_len
        positions of the cache (all of it when None)."""
        self.k.index_copy_(2, input_pos, k)
        self.v.index_copy_(2, input_pos, v)
        return self.k[:, :, :kv_len], self.v[:, :, :kv_len]


class Attention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        # q, k, v projections stacked into one matmul (the loader concatenates them).
        self.wqkv = nn.Parameter(torch.empty(args.q_dim + 2 * args.kv_dim, args.hidden_size))
        self.wo = nn.Parameter(torch.empty(args.hidden_size, args.q_dim))
        self.q_norm = nn.Parameter(torch.ones(args.q_dim))
        self.k_norm = nn.Parameter(torch.ones(args.kv_dim))
        self.kv_cache: KVCache | None = None

    def forward(self, x, rope, mask, input_pos, kv_len):
        a = self.args
        b, t, _ = x.shape
        q, k, v = linear(x, self.wqkv).split([a.q_dim, a.kv_dim, a.kv_dim], dim=-1)
        # QK-norm over the whole flattened q (and k), before the split into heads and before RoPE.
        q, k = rms_norm(q, self.q_norm, a.rms_norm_eps), rms_norm(k, self.k_norm, a.rms_norm_eps)
        qk = torch.cat((q, k), dim=-1).view(b, t, a.num_heads + a.num_kv_heads, a.head_dim)
        qk = apply_rope(qk, *rope, a.rotary_dim)
        q, k = qk.transpose(1, 2).split([a.num_heads, a.num_kv_heads], dim=1)
        v = v.view(b, t, a.num_kv_heads, a.head_dim).transpose(1, 2)
        k, v = self.kv_cache.update(input_pos, k, v, kv_len)
        # Query head i reads KV head i // (heads / kv_heads): SDPA's enable_gqa grouping.
        if cpu_kernels.usable(b * t, q, k, limit=1):  # reads only the cache rows this token may see
            cache = self.kv_cache
            y = torch.ops.mmx.decode_attention(q, cache.k, cache.v, input_pos, a.head_dim**-0.5)
        elif b * t == 1 and torch.compiler.is_compiling():
            y = decode_attention(q, k, v, mask, a.head_dim**-0.5)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, scale=a.head_dim**-0.5, enable_gqa=a.num_heads != a.num_kv_heads
            )
        return linear(y.transpose(1, 2).reshape(b, t, a.q_dim), self.wo)


class MoE(nn.Module):
    def __init__(self, args: ModelArgs, fp8_experts: bool = False) -> None:
        super().__init__()
        self.top_k = args.top_k
        e, h, i = args.num_experts, args.hidden_size, args.expert_dim
        # Router weight and bias stay fp32 whatever the model dtype (routing is precision-sensitive).
        self.gate = nn.Parameter(torch.empty(e, h, dtype=torch.float32))
        self.correction_bias = (
            nn.Parameter(torch.zeros(e, dtype=torch.float32)) if args.routing_bias else None
        )
        # [E, out, in]: gate (w1) rows, then up (w3). FP8 experts (see loader.load_model) keep fp32 scales
        # per row and 128-column block beside them.
        stored = {"dtype": torch.float8_e4m3fn} if fp8_experts else {}
        self.w13 = nn.Parameter(torch.empty(e, 2 * i, h, **stored), requires_grad=False)
        self.w2 = nn.Parameter(torch.empty(e, h, i, **stored), requires_grad=False)
        self.w13_scale = self.w2_scale = None
        if fp8_experts:
            self.w13_scale = nn.Parameter(torch.empty(e, 2 * i, -(-h // 128)), requires_grad=False)
            self.w2_scale = nn.Parameter(torch.empty(e, h, -(-i // 128)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.view(-1, x.shape[-1])
        scales = None if self.w13_scale is None else (self.w13_scale, self.w2_scale)
        if cpu_kernels.usable(flat.shape[0], flat, self.w13):  # routing and experts in one kernel call
            args = (self.gate, self.correction_bias, self.w13, self.w2, self.top_k, *(scales or ()))
            return torch.ops.mmx.moe_decode(flat, *args).view(x.shape)
        weights, idx = route(flat, self.gate, self.correction_bias, self.top_k)
        if scales or self.w13.dtype != flat.dtype:
            # FP8 or exactly-bf16 experts past the kernels' few tokens: widened one busy expert at a time.
            return experts_looped(flat, weights, idx, self.w13, self.w2, scales).view(x.shape)
        return run_experts(flat, weights, idx, self.w13, self.w2).view(x.shape)


class Block(nn.Module):
    def __init__(self, args: ModelArgs, fp8_experts: bool = False) -> None:
        super().__init__()
        self.eps = args.rms_norm_eps
        self.input_norm = nn.Parameter(torch.ones(args.hidden_size))
        self.attn = Attention(args)
        self.post_attn_norm = nn.Parameter(torch.ones(args.hidden_size))
        self.moe = MoE(args, fp8_experts)

    def forward(self, x, rope, mask, input_pos, kv_len):
        x = x + self.attn(rms_norm(x, self.input_norm, self.eps), rope, mask, input_pos, kv_len)
        return x + self.moe(rms_norm(x, self.post_attn_norm, self.eps))


class M2Transformer(nn.Module):
    def __init__(self, args: ModelArgs, *, fp8_experts: bool = False) -> None:
        super().__init__()
        self.args = args
        self.embed = nn.Parameter(torch.empty(args.vocab_size, args.hidden_size))
        self.layers = nn.ModuleList(Block(args, fp8_experts) for _ in range(args.num_layers))
        self.norm = nn.Parameter(torch.ones(args.hidden_size))
        self.lm_head = nn.Parameter(torch.empty(args.vocab_size, args.hidden_size))
        self.max_seq_len = 0
        self.max_batch = 0
        self.cache_owner = None  # whoever last wrote the KV cache (generate.Generator tracks its tokens)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.device

    def setup_caches(self, max_seq_len: int, max_batch: int = 1) -> None:
        """Preallocate the KV cache and RoPE tables (a no-op when the current ones are big enough)."""
        if max_seq_len <= self.max_seq_len and max_batch <= self.max_batch:
            return
        a, dtype, device = self.args, self.dtype, self.device
        for layer in self.layers:
            grown = KVCache(max_batch, a.num_kv_heads, max_seq_len, a.head_dim, dtype, device)
            old = layer.attn.kv_cache
            if old is not None:  # keep what is cached: the next prompt usually extends the last one
                batch, _, length, _ = old.k.shape
                grown.k[:batch, :, :length].copy_(old.k)
                grown.v[:batch, :, :length].copy_(old.v)
            layer.attn.kv_cache = grown
        cos, sin = rope_tables(a, max_seq_len)
        # Computed in fp32, applied in the activation dtype (as the reference does).
        self.register_buffer("rope_cos", cos.to(device=device, dtype=dtype), persistent=False)
        self.register_buffer("rope_sin", sin.to(device=device, dtype=dtype), persistent=False)
        self.register_buffer("cache_pos", torch.arange(max_seq_len, device=device), persistent=False)
        self.max_seq_len, self.max_batch = max_seq_len, max_batch

    def forward(
        self,
        idx: torch.Tensor,
        input_pos: torch.Tensor,
        *,
        kv_len: int | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """idx [B, T] token ids at positions input_pos [T] -> fp32 logits [B, T (or 1), vocab].

        Attention reads the first kv_len cache positions (all when None; the caller knows an upper
        bound of the positions, so this costs no host sync)."""
        x = F.embedding(idx, self.embed)
        rope = (self.rope_cos[input_pos][:, None], self.rope_sin[input_pos][:, None])
        mask = self.cache_pos[None, :kv_len] <= input_pos[:, None]  # causal over the static cache
        for layer in self.layers:
            x = layer(x, rope, mask, input_pos, kv_len)
        if last_only:
            x = x[:, -1:]
        logits = linear(rms_norm(x, self.norm, self.args.rms_norm_eps), self.lm_head)
        return logits if logits.dtype == torch.float32 else logits.float()
