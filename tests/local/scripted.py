"""A crafted M2 checkpoint whose greedy decoding writes a known completion with a tool call.

A real M2 network whose attention and expert outputs are zero and whose embeddings/lm_head form a
bigram chain, so greedy decoding follows CHAIN (the tokenizer carries the chain's pieces as added tokens).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken

from agent.backends.local.checkpoint_writer import random_tensors, save_checkpoint, train_tokenizer
from agent.backends.local.config import ModelArgs

CHAIN = [
    "Let me look.",
    "</think>",
    "\n\n",
    "<minimax:tool_call>",
    '\n<invoke name="bash">\n',
    '<parameter name="command">',
    "ls -la",
    "</parameter>\n",
    "</invoke>\n",
    "</minimax:tool_call>",
    "[e~[",
]


def build_scripted_checkpoint(out: Path, max_positions: int = 4096, chain: list[str] = CHAIN) -> Path:
    """`chain`: the completion's pieces, each one token, no piece twice (a bigram chain cannot branch)."""
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(400)
    tok.add_tokens(
        [AddedToken(t, normalized=False, special=False) for t in chain if tok.token_to_id(t) is None]
    )
    tok.save(str(out / "tokenizer.json"))
    ids = [tok.token_to_id(t) for t in chain]
    newline = tok.token_to_id("Ċ")  # the generation prompt ends "<think>\n"
    args = ModelArgs(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        rotary_dim=8,
        num_experts=4,
        top_k=2,
        expert_dim=16,
        torch_dtype="float32",
        max_position_embeddings=max_positions,
    )
    w = random_tensors(args, seed=0)
    for n in range(args.num_layers):  # attention and experts add nothing to the residual stream
        w[f"model.layers.{n}.self_attn.o_proj.weight"].zero_()
        for j in range(args.num_experts):
            w[f"model.layers.{n}.block_sparse_moe.experts.{j}.w2.weight"].zero_()
    w["model.norm.weight"].fill_(1.0)
    embed, head = w["model.embed_tokens.weight"], w["lm_head.weight"]
    head.mul_(0.01)
    for a, b in zip([newline, *ids], ids, strict=False):  # logits(a) peak at b
        head[b] = 10 * embed[a] / embed[a].norm()
    save_checkpoint(out, args.to_config_dict("original"), w)
    return out
