"""Batch-1 greedy decode speed: our local backend against transformers' MiniMaxM2ForCausalLM.generate on the
same checkpoint, in the same run, for bf16 and fp32. Prints tokens/s and the ratio.

    .venv/bin/python benchmarks/local_decode.py [--preset small|tiny] [--compile] [--tokens 128] [--threads 1]

The checkpoint is `mmx-agent model init --preset ...` (random weights). transformers runs with its defaults
(sdpa attention, grouped_mm experts). All decode the same prompt for the same number of tokens (no early
stop). Each runner is warmed up (and, with --compile, compiled) first; then the runners take turns, once
per round, so that load from other processes hits them alike; the best round of each is reported.

The checkpoint stores bf16 weights, so in float32 our loader keeps them in bf16 (bf16_weights: exact, the
same logits bit for bit as fp32 copies). With --compile the float32 rows also time our compiled step with
fp32 copies of the weights (path `fp32-copies`), which is what transformers reads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch


def ours(path, dtype, prompt, n, compile, bf16_weights=None):
    from agent.backends.local.generate import Generator, SamplingParams
    from agent.backends.local.loader import load_model

    gen = Generator(load_model(path, dtype=dtype, bf16_weights=bf16_weights), compile=compile)
    greedy = SamplingParams(greedy=True)

    def run():
        gen._cached = []  # no prefix reuse between rounds: the same work as transformers does
        return list(gen.generate(prompt, n, greedy))

    return run


def transformers(path, dtype, prompt, n):
    from transformers import MiniMaxM2ForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    model = MiniMaxM2ForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    ids = torch.tensor([prompt])
    kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)

    def run():
        with torch.inference_mode():
            return model.generate(ids, **kw)[0, len(prompt) :].tolist()

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=["tiny", "small"])
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="1: batch-1 decode of a small model is op-bound")
    p.add_argument("--compile", action="store_true", help="also time our torch.compile'd decode step")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)

    from agent.backends.local.checkpoint_writer import init_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        args = init_checkpoint(tmp, a.preset, seed=0)
        total, active = args.param_counts()
        g = torch.Generator().manual_seed(0)
        prompt = torch.randint(4, args.vocab_size, (a.prompt_len,), generator=g).tolist()
        print(
            f"checkpoint: preset {a.preset}, {args.num_layers} layers, hidden {args.hidden_size}, "
            f"{args.num_experts} experts top-{args.top_k}, {total / 1e6:.1f}M params ({active / 1e6:.1f}M active)"
        )
        print(
            f"batch 1, greedy, prompt {a.prompt_len} tokens, {a.tokens} new tokens, {a.threads} threads, "
            f"best of {a.rounds} interleaved rounds; torch {torch.__version__}"
        )
        print(
            f"{'dtype':<10}{'path':<12}{'ours tok/s':>12}{'transformers tok/s':>20}{'ratio':>8}  same tokens"
        )
        for dtype in ("bfloat16", "float32"):
            runners = {"transformers": transformers(tmp, dtype, prompt, a.tokens)}
            runners["eager"] = ours(tmp, dtype, prompt, a.tokens, compile=False)
            if a.compile:
                runners["compiled"] = ours(tmp, dtype, prompt, a.tokens, compile=True)
                if dtype == "float32":
                    runners["fp32-copies"] = ours(tmp, dtype, prompt, a.tokens, True, bf16_weights=False)
            outputs = {name: run() for name, run in runners.items()}  # warm-up, compilation
            best = dict.fromkeys(runners, float("inf"))
            for _ in range(a.rounds):
                for name, run in runners.items():
                    t = time.perf_counter()
                    run()
                    best[name] = min(best[name], time.perf_counter() - t)
            theirs = a.tokens / best["transformers"]
            for name in runners:
                if name == "transformers":
                    continue
                rate = a.tokens / best[name]
                same = sum(x == y for x, y in zip(outputs[name], outputs["transformers"], strict=True))
                print(
                    f"{dtype:<10}{name:<12}{rate:>12.1f}{theirs:>20.1f}{rate / theirs:>7.1f}x  {same}/{a.tokens}"
                )


if __name__ == "__main__":
    main()
