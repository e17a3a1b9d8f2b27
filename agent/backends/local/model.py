"""The MiniMax-M2 network in one readable file (transformers' MiniMaxM2ForCausalLM is the reference the tests hold it to).

Per layer: pre-norm attention with full-width QK-norm before RoPE, partial rotate-half RoPE and GQA; then
a sigmoid-routed mixture of SwiGLU experts. A static KV cache is written at `input_pos`; the forward pass
reads nothing back to the host, so a decode step can be graph-captured.

At batch-1 decode the cost on CPU is the number of ops and the rate at which weights stream in, not the
arithmetic. So weights are plain Parameters (no nn.Linear/nn.Module per projection), q and k share one
RoPE call, and no-op dtype casts are skipped. The projections, attention over the cache and the MoE block
run through the model's `ops` (ops.py), picked once at load: our C++ CPU kernels, Triton expert kernels
on the GPU, or plain PyTorch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agent.backends.local.config import ModelArgs
from agent.backends.local.ops import CacheRows, Ops


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Statistics in fp32, cast back, then the learned weight (MiniMax's and transformers' order).
    torch's rms_norm computes exactly that (bit for bit, fp32 and bf16) in one call."""
    return F.rms_norm(x, (x.shape[-1],), eps=eps) * weight


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


class KVCache(nn.Module):
    def __init__(self, batch: int, kv_heads: int, max_seq_len: int, head_dim: int, dtype, device) -> None:
        super().__init__()
        shape = (batch, kv_heads, max_seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(
        self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v [B, kv_heads, T, head_dim] written at positions input_pos [T] into the first B rows (a cache
        set up for a batching engine has more); returns those rows' k and v."""
        b = k.shape[0]
        k_cache, v_cache = (self.k, self.v) if b == self.k.shape[0] else (self.k[:b], self.v[:b])
        k_cache.index_copy_(2, input_pos, k)
        v_cache.index_copy_(2, input_pos, v)
        return k_cache, v_cache

    def scatter(self, rows: torch.Tensor, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v [B, kv_heads, T, head_dim] written into cache rows `rows` [B], row i at its own positions
        input_pos[i] (input_pos [B, T]): one write for a batch of sequences at different lengths."""
        where = (rows[:, None].expand_as(input_pos), input_pos)
        self.k.transpose(1, 2).index_put_(where, k.transpose(1, 2))
        self.v.transpose(1, 2).index_put_(where, v.transpose(1, 2))


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

    def forward(self, x, rope, mask, input_pos, kv_len, ops: Ops, rows=None):
        a = self.args
        b, t, _ = x.shape
        q, k, v = ops.linear(x, self.wqkv).split([a.q_dim, a.kv_dim, a.kv_dim], dim=-1)
        # QK-norm over the whole flattened q (and k), before the split into heads and before RoPE.
        q, k = rms_norm(q, self.q_norm, a.rms_norm_eps), rms_norm(k, self.k_norm, a.rms_norm_eps)
        qk = torch.cat((q, k), dim=-1).view(b, t, a.num_heads + a.num_kv_heads, a.head_dim)
        qk = apply_rope(qk, *rope, a.rotary_dim)
        q, k = qk.transpose(1, 2).split([a.num_heads, a.num_kv_heads], dim=1)
        v = v.view(b, t, a.num_kv_heads, a.head_dim).transpose(1, 2)
        cache = self.kv_cache
        if rows is None:
            k_cache, v_cache = cache.update(input_pos, k, v)
            y = ops.attention(q, k_cache, v_cache, input_pos, kv_len, mask, a.head_dim**-0.5)
        else:
            y = self._attend_rows(q, k, v, rows, input_pos, kv_len, mask, ops)
        return ops.linear(y.transpose(1, 2).reshape(b, t, a.q_dim), self.wo)

    def _attend_rows(self, q, k, v, rows, input_pos, kv_len, mask, ops: Ops):
        """Sequence i of the batch is in cache row rows.ids[i], at positions input_pos[i]: each attends over
        its own row and length, computing what it would alone (ops.attention_rows)."""
        cache = self.kv_cache
        cache.scatter(rows.tensor, input_pos, k, v)
        return ops.attention_rows(
            q, cache.k, cache.v, rows, input_pos, kv_len, mask, self.args.head_dim**-0.5
        )


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

    def forward(self, x: torch.Tensor, ops: Ops) -> torch.Tensor:
        scales = None if self.w13_scale is None else (self.w13_scale, self.w2_scale)
        flat = x.view(-1, x.shape[-1])
        y = ops.moe(flat, self.gate, self.correction_bias, self.w13, self.w2, self.top_k, scales)
        return y.view(x.shape)


class Block(nn.Module):
    def __init__(self, args: ModelArgs, fp8_experts: bool = False) -> None:
        super().__init__()
        self.eps = args.rms_norm_eps
        self.input_norm = nn.Parameter(torch.ones(args.hidden_size))
        self.attn = Attention(args)
        self.post_attn_norm = nn.Parameter(torch.ones(args.hidden_size))
        self.moe = MoE(args, fp8_experts)

    def forward(self, x, rope, mask, input_pos, kv_len, ops: Ops, rows=None):
        x = x + self.attn(rms_norm(x, self.input_norm, self.eps), rope, mask, input_pos, kv_len, ops, rows)
        return x + self.moe(rms_norm(x, self.post_attn_norm, self.eps), ops)


class RowMasks:
    """The causal mask of each sequence of a batch ([T, kv_len[i]]), made when first asked for: the CPU
    kernels' one-token attention needs none."""

    def __init__(self, cache_pos: torch.Tensor, input_pos: torch.Tensor, kv_len: list[int]) -> None:
        self.cache_pos, self.input_pos, self.kv_len = cache_pos, input_pos, kv_len
        self.made: dict[int, torch.Tensor] = {}

    def __getitem__(self, i: int) -> torch.Tensor:
        if i not in self.made:
            self.made[i] = self.cache_pos[None, : self.kv_len[i]] <= self.input_pos[i][:, None]
        return self.made[i]


class M2Transformer(nn.Module):
    def __init__(self, args: ModelArgs, ops: Ops, *, fp8_experts: bool = False) -> None:
        super().__init__()
        self.args = args
        self.ops = ops  # how the layers compute (ops.py); a compiled step traces with ops.traced()
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
        kv_len: int | list[int] | None = None,
        last_only: bool = False,
        rows: list[int] | None = None,
    ) -> torch.Tensor:
        """idx [B, T] token ids at positions input_pos [T] -> fp32 logits [B, T (or 1), vocab].

        Attention reads the first kv_len cache positions (all when None; the caller knows an upper
        bound of the positions, so this costs no host sync).

        With `rows`, batch row i is a sequence of its own in cache row rows[i], at positions
        input_pos[i] (input_pos [B, T]), reading its first kv_len[i] positions: a batch of sequences at
        different lengths (the batching engine's decode step)."""
        x = F.embedding(idx, self.embed)
        if rows is None:
            rope = (self.rope_cos[input_pos][:, None], self.rope_sin[input_pos][:, None])
            mask = self.cache_pos[None, :kv_len] <= input_pos[:, None]  # causal over the static cache
            cache_rows = None
        else:
            rope = (self.rope_cos[input_pos][:, :, None], self.rope_sin[input_pos][:, :, None])
            mask = RowMasks(self.cache_pos, input_pos, kv_len)
            cache_rows = CacheRows(rows, self.device)
        for layer in self.layers:
            x = layer(x, rope, mask, input_pos, kv_len, self.ops, cache_rows)
        if last_only:
            x = x[:, -1:]
        logits = self.ops.linear(rms_norm(x, self.norm, self.args.rms_norm_eps), self.lm_head)
        return logits if logits.dtype == torch.float32 else logits.float()
