"""One real-width M2 MoE layer on one GPU: the fused Triton expert kernels against the torch path.

    PYTHONPATH=. python benchmarks/gpu_moe.py [--sweep] [--iters 50]
    python benchmarks/gpu_moe.py --interpret-smoke      # CPU: same code path, tiny shapes, interpreter

Layer: hidden 3072, 256 experts, top-8, width 1536, random weights and routing; bf16, and FP8 e4m3
weights with 128x128 block scales (bf16 activations; for prefill also per-token-group FP8 activations).
Decode at 1, 8 and 64 tokens, prefill at 1024 and 4096. For each case it prints microseconds per call
(CUDA events, after warm-up; decode also replayed from a captured CUDA graph), the achieved TB/s of the
minimum traffic (the touched experts' weights and scales, the input and the output) against 4.8 TB/s,
TFLOP/s against the H200 dense peak (989 bf16; 1979 FP8 for the FP8-activation rows, as weight-only
FP8 runs bf16 tensor-core dots), and the torch path measured in the same run (experts.experts_grouped
on bf16 weights, what the local backend runs without Triton, FP8 checkpoints being dequantized at
load), as a ratio. Before timing, every case checks the kernel's output against the torch path; on
CUDA it also checks that the model's ops (ops.select_ops) run the experts on the kernels. Mismatches
and failed captures are listed at the end and make the exit status 1. `--sweep` adds a few other tile
configs at 1 and 4096 tokens. Sized to finish well inside 5 minutes on one H200 (not yet run on one). Without CUDA it prints
a message and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree, uninstalled

PEAK_TBS = 4.8
PEAK_TFLOPS = {"bf16": 989.0, "fp8": 1979.0}
FAILURES: list[str] = []


@dataclass(frozen=True)
class Shape:
    hidden: int
    experts: int
    top_k: int
    inter: int
    block: int  # FP8 scale block (square)
    decode_tokens: tuple[int, ...]
    prefill_tokens: tuple[int, ...]


REAL = Shape(3072, 256, 8, 1536, 128, (1, 8, 64), (1024, 4096))
SMOKE = Shape(64, 8, 2, 32, 16, (1, 3), (40,))  # interpreter-sized


@dataclass
class Layer:
    """Kernel operands (FP8 values or, in the interpreter, the same values in the activation dtype,
    with scales) and the torch path's weights (dequantized to the activation dtype)."""

    w13: torch.Tensor
    w2: torch.Tensor
    s13: torch.Tensor | None
    s2: torch.Tensor | None
    ref_w13: torch.Tensor
    ref_w2: torch.Tensor
    bytes_per_expert: int


def make_layer(shape: Shape, act: torch.dtype, fp8: bool, device: str, emulate_fp8: bool) -> Layer:
    from agent.backends.local.triton_moe import quantize_fp8_blocks

    g = torch.Generator(device=device).manual_seed(0)
    e, h, i = shape.experts, shape.hidden, shape.inter
    w13 = (torch.randn(e, 2 * i, h, generator=g, device=device) * h**-0.5).to(act)
    w2 = (torch.randn(e, h, i, generator=g, device=device) * i**-0.5).to(act)
    if not fp8:
        return Layer(w13, w2, None, None, w13, w2, (w13[0].numel() + w2[0].numel()) * w13.element_size())
    qs = [quantize_fp8_blocks(w, (shape.block, shape.block)) for w in (w13, w2)]
    del w13, w2
    refs = [_dequantize(q, s, shape.block).to(act) for q, s in qs]
    (q13, s13), (q2, s2) = qs
    per_expert = q13[0].numel() + q2[0].numel() + 4 * (s13[0].numel() + s2[0].numel())
    if emulate_fp8:  # the interpreter has no FP8: the same values in the activation dtype, same scales
        q13, q2 = q13.to(act), q2.to(act)
    return Layer(q13, q2, s13, s2, refs[0], refs[1], per_expert)


def _dequantize(q: torch.Tensor, s: torch.Tensor, block: int) -> torch.Tensor:
    out = torch.empty(q.shape, dtype=torch.bfloat16 if q.is_cuda else torch.float32, device=q.device)
    for e in range(q.shape[0]):  # one expert at a time keeps the fp32 temporaries small
        full = s[e].repeat_interleave(block, 0)[: q.shape[1]].repeat_interleave(block, 1)[:, : q.shape[2]]
        out[e] = q[e].float() * full
    return out


def make_routing(n: int, shape: Shape, act: torch.dtype, device: str):
    g = torch.Generator(device=device).manual_seed(n)
    x = torch.randn(n, shape.hidden, generator=g, device=device).to(act)
    scores = torch.rand(n, shape.experts, generator=g, device=device)
    w, idx = scores.topk(shape.top_k, dim=-1)
    return x, w / w.sum(-1, keepdim=True), idx


def time_us(fn, device: str, iters: int, graph: bool = False) -> float:
    """Mean microseconds per call after warm-up; on the CPU (interpreter smoke) one call, wall clock."""
    if device == "cpu":
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e6
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up (compiles) off the default stream, as graph capture wants
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        fn = g.replay
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / iters


def torch_path(x, w, idx, layer: Layer) -> torch.Tensor:
    from agent.backends.local import experts

    if hasattr(torch.nn.functional, "grouped_mm"):
        return experts.experts_grouped(x, w, idx, layer.ref_w13, layer.ref_w2)
    return _expert_loop(x, w, idx, layer.ref_w13, layer.ref_w2)  # older torch: the eager baseline


def _expert_loop(x, w, idx, w13, w2) -> torch.Tensor:
    """transformers' eager loop (one matmul pair per expert with tokens; host syncs on `nonzero`)."""
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    inter = w2.shape[2]
    for e in idx.unique().tolist():
        tok, slot = (idx == e).nonzero(as_tuple=True)
        h = x[tok] @ w13[e].T
        y = (torch.nn.functional.silu(h[:, :inter]) * h[:, inter:]) @ w2[e].T
        out.index_add_(0, tok, y.float() * w[tok, slot, None])
    return out.to(x.dtype)


def run_case(shape, layer, n, label, device, iters, sweep=()):
    """Yields report lines as they are measured (a timeout still leaves the finished ones printed)."""
    from agent.backends.local.triton_moe import DECODE_MAX_PAIRS, fused_moe

    act = layer.ref_w13.dtype
    x, w, idx = make_routing(n, shape, act, device)
    scales = dict(w13_scale=layer.s13, w2_scale=layer.s2, block_shape=(shape.block, shape.block))
    kernel = lambda path="auto", config=None: fused_moe(  # noqa: E731
        x, w, idx, layer.w13, layer.w2, path=path, config=config, **scales
    )
    kernel_fp8_act = lambda: fused_moe(  # noqa: E731
        x, w, idx, layer.w13, layer.w2, path="grouped", fp8_activations=True, **scales
    )
    reference = lambda: torch_path(x, w, idx, layer)  # noqa: E731
    ref = reference().float()
    err = (kernel().float() - ref).abs().max().item() / ref.abs().max().item()
    if err > 2e-2:
        FAILURES.append(f"{label} n={n}: kernel output differs from the torch path (rel err {err:.3g})")

    touched = len(set(idx.flatten().tolist()))
    min_bytes = touched * layer.bytes_per_expert + 2 * x.numel() * x.element_size()
    flops = 6 * idx.numel() * shape.hidden * shape.inter

    def row(name, fn, graph=False, torch_us=None, note="", optional=False, peak=PEAK_TFLOPS["bf16"]):
        try:
            us = time_us(fn, device, iters, graph=graph)
        except Exception as e:  # e.g. a capture failure: report it, keep measuring the rest
            if not optional:
                FAILURES.append(f"{label} n={n} {name}: {type(e).__name__}: {e}")
            return f"{label:5} {n:5} {name:22} failed: {type(e).__name__}: {str(e)[:80]}", None
        tbs, tflops = min_bytes / us / 1e6, flops / us / 1e6
        ratio = f"{torch_us / us:6.2f}x" if torch_us else ""
        line = (
            f"{label:5} {n:5} {name:22} {us:10.1f} {tbs:6.2f} ({100 * tbs / PEAK_TBS:5.1f}%) "
            f"{tflops:7.1f} ({100 * tflops / peak:5.1f}%) {ratio}{note}"
        )
        return line, us

    line, torch_us = row("torch", reference, note=f"  rel err {err:.1e}, {touched} experts")
    yield line
    auto = "decode" if idx.numel() <= DECODE_MAX_PAIRS else "grouped"
    yield row(f"triton {auto}", kernel, torch_us=torch_us)[0]
    if n <= max(shape.decode_tokens):
        other = "grouped" if auto == "decode" else "decode"
        yield row(f"triton {other}", lambda: kernel(other), torch_us=torch_us)[0]
        if device != "cpu":
            yield row(f"triton {auto} graph", kernel, graph=True, torch_us=torch_us)[0]
            # The torch path may not be capturable (its failure is reported, not counted).
            yield row("torch graph", reference, graph=True, torch_us=torch_us, optional=True)[0]
    path = "decode" if n * shape.top_k <= DECODE_MAX_PAIRS else "grouped"
    if (
        layer.s13 is not None and n in shape.prefill_tokens
    ):  # FP8 x FP8 tensor-core dots, against the FP8 peak
        act_err = (kernel_fp8_act().float() - ref).abs().max().item() / ref.abs().max().item()
        if act_err > 0.1:
            FAILURES.append(f"{label} n={n} FP8 activations: rel err {act_err:.3g}")
        note = f"  rel err {act_err:.1e}"
        yield row(
            "triton grouped fp8-act", kernel_fp8_act, torch_us=torch_us, note=note, peak=PEAK_TFLOPS["fp8"]
        )[0]
    for c in sweep:
        tiles = (
            f"  m{c.block_m} n{c.block_n} k{c.block_k} g{c.group_m} warps{c.num_warps} stages{c.num_stages}"
        )
        yield row(f"  sweep {path}", lambda c=c: kernel(path, c), torch_us=torch_us, note=tiles)[0]


def check_hook(shape, layer, device) -> str:
    """The local backend's dispatch: on CUDA, the model's ops must be the Triton kind and its MoE block
    must give exactly fused_moe's output for the routing it computes."""
    from agent.backends.local.experts import route
    from agent.backends.local.ops import select_ops
    from agent.backends.local.triton_moe import fused_moe

    if device != "cuda":
        return "hook: not on CUDA, the torch ops run the experts"
    dtype = layer.ref_w13.dtype
    ops = select_ops(device, dtype)
    x, _, _ = make_routing(1, shape, dtype, device)
    gate = torch.randn(layer.w13.shape[0], x.shape[1], device=device)
    w, idx = route(x, gate, None, shape.top_k)
    out = ops.moe(x, gate, None, layer.w13, layer.w2, shape.top_k, None)
    same = ops.name == "triton" and torch.equal(out, fused_moe(x, w, idx, layer.w13, layer.w2))
    if not same:
        FAILURES.append("the ops on CUDA do not run the experts on the Triton kernels")
    return f"hook: the ops on CUDA run the experts on the Triton kernels: {'yes' if same else 'NO'}"


def sweep_configs(n: int, fp8: bool):
    from agent.backends.local.triton_moe import KernelConfig

    if n == 1:
        return [
            KernelConfig(block_n=bn, block_k=bk, num_warps=wp, num_stages=st)
            for bn, bk, wp, st in [(16, 128, 4, 3), (32, 128, 4, 4), (64, 128, 8, 3), (16, 256, 4, 3)]
            if not (fp8 and bk > 128)
        ]
    if n == 4096:
        return [
            KernelConfig(block_m=bm, block_n=bn, block_k=bk, group_m=8, num_warps=wp, num_stages=st)
            for bm, bn, bk, wp, st in [(128, 128, 64, 8, 3), (64, 128, 128, 8, 2), (64, 64, 64, 4, 4)]
        ]
    return []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--sweep", action="store_true", help="also time a few other tile configs")
    p.add_argument("--interpret-smoke", action="store_true", help="CPU, Triton interpreter, tiny shapes")
    args = p.parse_args(argv)
    if args.interpret_smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before Triton is first imported (by the kernels)
        shape, device, dtypes = SMOKE, "cpu", [("fp16", torch.float16, False), ("fp8", torch.float16, True)]
        print("interpreter smoke test on the CPU: tiny shapes, the timings mean nothing")
    elif torch.cuda.is_available():
        shape, device, dtypes = REAL, "cuda", [("bf16", torch.bfloat16, False), ("fp8", torch.bfloat16, True)]
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    else:
        print("no CUDA device: nothing to measure (--interpret-smoke runs the code path on the CPU)")
        return 0
    from agent.backends.local.triton_moe import triton_available

    if not triton_available():
        print("Triton is not installed: nothing to measure")
        return 0
    print(
        f"{'dtype':5} {'n':>5} {'path':22} {'us':>10} {'TB/s':>6} {'(peak)':>8} {'TFLOP/s':>7} {'(peak)':>8} torch/triton"
    )
    for label, act, fp8 in dtypes:
        layer = make_layer(shape, act, fp8, device, emulate_fp8=device == "cpu")
        if not fp8:
            print(check_hook(shape, layer, device))
        for n in shape.decode_tokens + shape.prefill_tokens:
            sweep = sweep_configs(n, fp8) if args.sweep else ()
            for line in run_case(shape, layer, n, label, device, args.iters if n < 1024 else 10, sweep):
                print(line, flush=True)
        del layer
        if device == "cuda":
            torch.cuda.empty_cache()
    for failure in FAILURES:
        print("FAILED:", failure)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
