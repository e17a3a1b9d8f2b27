"""Independent references for the local backend's tests: transformers' MiniMaxM2ForCausalLM checkpoints,
the naive per-expert loop, and a block-by-block FP8 dequantization."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

# A tiny M2: q width (6 x 16 = 96) differs from hidden (64), GQA 3:1, RoPE on half of each head.
TINY = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=6,
    num_key_value_heads=2,
    head_dim=16,
    num_local_experts=8,
    num_experts_per_tok=2,
    max_position_embeddings=1024,
    initializer_range=0.1,
)
# Dims that are and are not multiples of 128, so partial FP8 blocks (ceil) are exercised.
FP8_SHAPES = dict(
    vocab_size=512,
    hidden_size=256,
    intermediate_size=192,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    num_local_experts=4,
    num_experts_per_tok=2,
    max_position_embeddings=1024,
    initializer_range=0.05,
)


def hf_model(seed: int, **shape):
    """transformers' MiniMaxM2ForCausalLM, fp32, eager attention, random weights; norm weights and the
    routing correction bias randomised too (zeros/ones would hide axis and bias bugs)."""
    from transformers import MiniMaxM2Config, MiniMaxM2ForCausalLM

    config = MiniMaxM2Config(
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "partial_rotary_factor": 0.5},
        bos_token_id=None,
        eos_token_id=None,
        **shape,
    )
    torch.manual_seed(seed)
    model = MiniMaxM2ForCausalLM(config).float().eval()
    model.set_attn_implementation("eager")
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        for layer in model.model.layers:
            layer.mlp.e_score_correction_bias.copy_(
                0.1 * torch.randn(shape["num_local_experts"], generator=g)
            )
    return model


def save_hf(model, out: Path, dialect: str) -> Path:
    """save_pretrained (original tensor names), then config.json in the requested dialect."""
    model.save_pretrained(out, max_shard_size="200KB")
    if dialect == "original":
        c = json.loads((out / "config.json").read_text())
        rope = c.pop("rope_parameters")
        c.pop("dtype", None)
        # As in MiniMax's own config.json (the bos/eos ids there are not this vocabulary's; ignored).
        c |= {
            "rotary_dim": int(rope["partial_rotary_factor"] * c["head_dim"]),
            "rope_theta": rope["rope_theta"],
            "scoring_func": "sigmoid",
            "use_routing_bias": True,
            "use_qk_norm": True,
            "qk_norm_type": "per_layer",
            "attn_type_list": [1] * c["num_hidden_layers"],
            "use_mtp": True,
            "num_mtp_modules": 3,
            "mtp_transformer_layers": 1,
            "shared_intermediate_size": 0,
            "torch_dtype": "bfloat16",
            "bos_token_id": 200034,
            "eos_token_id": 200020,
        }
        (out / "config.json").write_text(json.dumps(c))
    return out


def dequantize_blocks(q: torch.Tensor, scale_inv: torch.Tensor, block: int = 128) -> torch.Tensor:
    """Reference: one 128x128 block at a time, W[r, c] = fp8[r, c] * scale_inv[r // 128, c // 128]."""
    out = torch.empty(q.shape, dtype=torch.float32)
    for bi in range(math.ceil(q.shape[0] / block)):
        for bj in range(math.ceil(q.shape[1] / block)):
            rows, cols = slice(bi * block, (bi + 1) * block), slice(bj * block, (bj + 1) * block)
            out[rows, cols] = q[rows, cols].float() * scale_inv[bi, bj]
    return out


def moe_reference(x, weights, idx, w1, w3, w2):
    """The slow, obvious loop over experts: y_e = W2_e (silu(W1_e x) * W3_e x), summed with weights."""
    out = torch.zeros(x.shape, dtype=torch.float32)
    for e in range(w1.shape[0]):
        tok, slot = (idx == e).nonzero(as_tuple=True)
        if len(tok) == 0:
            continue
        h = x[tok].float()
        y = (F.silu(h @ w1[e].float().T) * (h @ w3[e].float().T)) @ w2[e].float().T
        out.index_add_(0, tok, y * weights[tok, slot, None])
    return out
