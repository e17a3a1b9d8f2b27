"""One real-width M2 MoE layer on CPU: achieved GB/s of expert weights read, against the memory-copy
bandwidth measured in the same run.

    .venv/bin/python benchmarks/moe_layer.py [--threads 2] [--dtype bfloat16] [--prefill 1024]

Layer: hidden 3072, 256 experts, top-8, width 1536 (~7.2 GB of expert weights in bf16, random values).
Decode: 1 token, new random routing every call (8 experts, 226 MB read in bf16), through our CPU kernel
`mmx::moe_decode` (what the model runs for a token on the CPU; routing included, from a random fp32 gate),
the torch ops' choice `ops.TorchOps.experts` (the grouped path at this size) and, for reference, the
gathered path.
With --fp8, also the decode on the same layer with FP8 experts kept as stored (half the bytes of bf16).
Prefill: 1024 tokens routed at random (every expert gets ~32 rows, so all 7.2 GB are read once), through
`TorchOps.experts` (the looped path on CPU) and, for reference, the grouped path.
Copy bandwidth: `dst.copy_(src)` of 1 GiB, best of 5; reported as bytes copied per second (the figure the
ratios use) and as read+write traffic. Decode and prefill GB/s are best-of-N too (medians printed). Weights are filled one expert at a time and freed at the end; peak ~9.5 GB.
"""

from __future__ import annotations

import argparse
import gc
import time

import torch


def best_time(repeats: int, fn, *args) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def copy_bandwidth(nbytes: int, repeats: int = 5) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8).fill_(1)
    dst = torch.empty_like(src).fill_(0)  # touch the pages before timing
    dst.copy_(src)
    return nbytes / best_time(repeats, dst.copy_, src) / 1e9


def fp8_decode_row(e, h, i, k, gate, tokens, g):
    """mmx::moe_decode on FP8 e4m3 experts with fp32 scales per row and 128-column block; GB/s counts
    the FP8 bytes and the scales read."""
    from agent.backends.local.loader import empty_expert_stack

    cpu = torch.device("cpu")
    w13 = empty_expert_stack((e, 2 * i, h), torch.float8_e4m3fn, cpu)
    w2 = empty_expert_stack((e, h, i), torch.float8_e4m3fn, cpu)
    for j in range(e):
        w13[j] = torch.empty(2 * i, h).uniform_(-300, 300, generator=g)
        w2[j] = torch.empty(h, i).uniform_(-300, 300, generator=g)
    s13 = torch.full((e, 2 * i, -(-h // 128)), 1e-4)
    s2 = torch.full((e, h, -(-i // 128)), 1e-4)
    nbytes = k * (3 * h * i + (s13[0].numel() + s2[0].numel()) * 4)
    for x in tokens[:3]:
        torch.ops.mmx.moe_decode(x, gate, None, w13, w2, k, s13, s2)
    times = []
    for x in tokens:
        t = time.perf_counter()
        torch.ops.mmx.moe_decode(x, gate, None, w13, w2, k, s13, s2)
        times.append(time.perf_counter() - t)
    best, median = min(times), sorted(times)[len(times) // 2]
    del w13, w2
    return (
        "decode 1 token, mmx::moe_decode on FP8 experts",
        nbytes / best / 1e9,
        f"best {best * 1e3:.1f} ms, median {median * 1e3:.1f} ms, {nbytes / 1e6:.0f} MB read",
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--experts", type=int, default=256)
    p.add_argument("--hidden", type=int, default=3072)
    p.add_argument("--width", type=int, default=1536)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--prefill", type=int, default=1024)
    p.add_argument("--decode-calls", type=int, default=30)
    p.add_argument("--fp8", action="store_true", help="also decode on FP8 experts (another ~3.7 GB)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)

    from agent.backends.local import cpu_kernels
    from agent.backends.local.experts import experts_gathered, experts_grouped
    from agent.backends.local.loader import empty_expert_stack
    from agent.backends.local.ops import TorchOps

    chosen = TorchOps(torch.device("cpu"), dtype).experts  # the expert path the torch ops pick

    e, h, i, k = a.experts, a.hidden, a.width, a.top_k
    copy = copy_bandwidth(1 << 30)
    w13 = empty_expert_stack((e, 2 * i, h), dtype, torch.device("cpu"))  # as the loader allocates them
    w2 = empty_expert_stack((e, h, i), dtype, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    for j in range(e):  # expert by expert: no full-size fp32 temporary
        w13[j].uniform_(-0.03, 0.03, generator=g)
        w2[j].uniform_(-0.03, 0.03, generator=g)
    per_expert = 3 * h * i * w13.element_size()
    print(
        f"layer: hidden {h}, {e} experts, top-{k}, width {i}, {a.dtype}, {e * per_expert / 1e9:.2f} GB of "
        f"expert weights; torch {torch.__version__}, {a.threads} threads"
    )

    def routing(n: int):
        idx = torch.stack([torch.randperm(e, generator=g)[:k] for _ in range(n)])
        w = torch.rand(n, k, generator=g)
        return w / w.sum(-1, keepdim=True), idx

    # Decode: one token, fresh experts each call.
    x1 = torch.randn(1, h, generator=g).to(dtype)
    calls = [routing(1) for _ in range(a.decode_calls + 3)]
    for c in range(3):  # warm-up (first-call kernel setup)
        chosen(x1, *calls[c], w13, w2)
    rows = []
    if cpu_kernels.available():
        gate = torch.randn(e, h, generator=g) / h**0.5
        tokens = [torch.randn(1, h, generator=g).to(dtype) for _ in range(a.decode_calls + 3)]
        for c in range(3):
            torch.ops.mmx.moe_decode(tokens[c], gate, None, w13, w2, k)
        times = []
        for c in range(a.decode_calls):
            t = time.perf_counter()
            torch.ops.mmx.moe_decode(tokens[c + 3], gate, None, w13, w2, k)
            times.append(time.perf_counter() - t)
        best, median = min(times), sorted(times)[len(times) // 2]
        rows.append(
            (
                "decode 1 token, mmx::moe_decode (CPU kernel, with routing)",
                k * per_expert / best / 1e9,
                f"best {best * 1e3:.1f} ms, median {median * 1e3:.1f} ms, {k * per_expert / 1e6:.0f} MB read",
            )
        )
        if a.fp8:  # the same layer with FP8 experts kept as stored (loader's fp8_experts)
            rows.append(fp8_decode_row(e, h, i, k, gate, tokens[3:], g))
    for name, fn, n_calls in (
        ("TorchOps.experts (grouped at this size)", chosen, a.decode_calls),
        ("experts_gathered (for reference)", experts_gathered, 3),
    ):
        times = []
        for c in range(n_calls):
            wts, idx = calls[c + 3]
            t = time.perf_counter()
            fn(x1, wts, idx, w13, w2)
            times.append(time.perf_counter() - t)
        nbytes = len(idx.unique()) * per_expert
        best, median = min(times), sorted(times)[len(times) // 2]
        rows.append(
            (
                f"decode 1 token, {name}",
                nbytes / best / 1e9,  # best of N, like the copy figure
                f"best {best * 1e3:.1f} ms, median {median * 1e3:.1f} ms, {nbytes / 1e6:.0f} MB read",
            )
        )

    # Prefill: every expert busy.
    wts, idx = routing(a.prefill)
    xp = torch.randn(a.prefill, h, generator=g).to(dtype)
    touched = len(idx.unique())
    chosen(xp[:64], wts[:64], idx[:64], w13, w2)  # warm-up at a smaller size
    flops = 2 * a.prefill * k * 3 * h * i
    for name, fn in (
        ("TorchOps.experts (looped on CPU)", chosen),
        ("experts_grouped (for reference)", experts_grouped),
    ):
        t = best_time(3, fn, xp, wts, idx, w13, w2)
        rows.append(
            (
                f"prefill {a.prefill} tokens, {name}",
                touched * per_expert / t / 1e9,
                f"{t * 1e3:.0f} ms, {touched} experts, {flops / t / 1e9:.0f} GFLOP/s",
            )
        )

    del xp
    copy = max(copy, copy_bandwidth(1 << 30))  # again at the end: the best of both (load varies)
    print(
        f"memory copy (best of before/after): {copy:.1f} GB/s copied ({2 * copy:.1f} GB/s read+write traffic)"
    )
    print(f"{'case':<60}{'GB/s':>8}{'of copy':>9}{'of r+w':>8}  detail")
    for name, gbs, detail in rows:
        print(f"{name:<60}{gbs:>8.1f}{gbs / copy:>8.0%}{gbs / (2 * copy):>8.0%}  {detail}")
    del w13, w2  # free the ~7 GB before exiting
    gc.collect()


if __name__ == "__main__":
    main()
