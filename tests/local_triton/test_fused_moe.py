"""The fused expert kernels, run by the Triton interpreter on the CPU, against the naive per-expert loop.

Collected only in a process started with TRITON_INTERPRET=1 (see conftest.py). The interpreter has no
bf16 or FP8, so the 16-bit path runs in fp16 and FP8 is emulated: e4m3 values (exact in fp16/fp32) with
their block scales, through the same kernel code that widens FP8 tiles and applies the scales in the K
loop. Shapes are odd on purpose: H = 40 and I = 24 are not multiples of the 16-wide tiles or scale
blocks, so partial tiles, partial scale blocks and a scale block straddling the gate/up seam all occur.
"""

from __future__ import annotations

import pytest
import torch

from agent.backends.local.triton_moe import KernelConfig, fused_moe, quantize_fp8_blocks
from tests.local.reference import dequantize_blocks, moe_reference

pytestmark = pytest.mark.usefixtures("triton_installed")

E, H, INTER, K, BLOCK = 8, 40, 24, 3, 16
SMALL = KernelConfig(block_m=16, block_n=16, block_k=16, group_m=2)  # several K steps and tiles
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float16: dict(atol=1e-2, rtol=1e-2)}


def experts(seed=0):
    g = torch.Generator().manual_seed(seed)
    w13 = torch.randn(E, 2 * INTER, H, generator=g) / H**0.5  # gate rows, then up rows
    w2 = torch.randn(E, H, INTER, generator=g) / INTER**0.5
    return w13, w2


def operands(dtype, fp8, seed=0):
    """(kernel kwargs, reference w1, w3, w2 in fp32). With fp8 the reference gets the dequantized
    weights, so the comparison checks the scale arithmetic, not the quantisation error."""
    w13, w2 = experts(seed)
    if not fp8:
        w13, w2 = w13.to(dtype), w2.to(dtype)
        return dict(w13=w13, w2=w2), (w13[:, :INTER], w13[:, INTER:], w2)
    (q13, s13), (q2, s2) = (quantize_fp8_blocks(w, (BLOCK, BLOCK)) for w in (w13, w2))
    d13 = torch.stack([dequantize_blocks(q, s, BLOCK) for q, s in zip(q13, s13, strict=True)])
    d2 = torch.stack([dequantize_blocks(q, s, BLOCK) for q, s in zip(q2, s2, strict=True)])
    kernel = dict(w13=q13.to(dtype), w2=q2.to(dtype), w13_scale=s13, w2_scale=s2, block_shape=(BLOCK, BLOCK))
    return kernel, (d13[:, :INTER], d13[:, INTER:], d2)


def routed(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, H, generator=g)
    idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(n)])
    w = torch.rand(n, K, generator=g) + 0.1
    return x, w / w.sum(-1, keepdim=True), idx


def check(x, w, idx, dtype, fp8, path, config=SMALL):
    kernel, (w1, w3, w2) = operands(dtype, fp8)
    x = x.to(dtype)
    out = fused_moe(x, w, idx, path=path, config=config, **kernel)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out.float(), moe_reference(x, w, idx, w1, w3, w2), **TOL[dtype])


@pytest.mark.parametrize("fp8", [False, True], ids=["plain", "fp8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("path,n", [("decode", 3), ("grouped", 9)])
def test_paths_equal_reference_loop(path, n, dtype, fp8):
    check(*routed(n, seed=n), dtype, fp8, path)


@pytest.mark.parametrize("fp8", [False, True], ids=["plain", "fp8"])
def test_auto_path_with_default_tiles(fp8):
    """The default (GPU-sized) tiles: one masked tile covers these dims; FP8 narrows block_k to 16."""
    for n in (2, 30):  # decode (6 pairs), then grouped (90 pairs)
        check(*routed(n, seed=7), torch.float32, fp8, "auto", config=None)


@pytest.mark.parametrize("path", ["decode", "grouped"])
def test_uneven_routing(path):
    """Every token but one on experts 5, 0, 7 and that one on 1, 2, 3 (4 and 6 get no rows); then top-1
    with expert 6 taking every token, which spans several row blocks on the grouped path."""
    n = 5 if path == "decode" else 33
    x, w, _ = routed(n, seed=2)
    idx = torch.tensor([[5, 0, 7]]).repeat(n, 1)
    idx[n // 2] = torch.tensor([1, 2, 3])
    check(x, w, idx, torch.float32, True, path)
    check(x, torch.ones(n, 1), torch.full((n, 1), 6), torch.float32, False, path)


def fp8_groups(a: torch.Tensor) -> torch.Tensor:
    """a rounded the way per-token-group FP8 activations round it: e4m3 values times group scales."""
    q, s = quantize_fp8_blocks(a.float()[None], (1, BLOCK))
    return q[0].float() * s[0].repeat_interleave(BLOCK, 1)[:, : a.shape[1]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_fp8_activations(dtype):
    """Grouped path, FP8 x FP8: the reference rounds x and the intermediate the same way, expert by
    expert, and computes in fp32 from there."""
    kernel, (w1, w3, w2) = operands(dtype, True)
    x, w, idx = routed(9, seed=5)
    x = x.to(dtype)
    out = fused_moe(x, w, idx, path="grouped", config=SMALL, fp8_activations=True, **kernel)
    ref = torch.zeros(x.shape)
    xq = fp8_groups(x)
    for t in range(x.shape[0]):
        for j in range(K):
            e = idx[t, j]
            h = (torch.nn.functional.silu(xq[t] @ w1[e].T) * (xq[t] @ w3[e].T)).to(dtype)
            ref[t] += w[t, j] * (fp8_groups(h[None])[0] @ w2[e].T)
    torch.testing.assert_close(out.float(), ref, **TOL[dtype])


def test_bad_scales_are_rejected():
    kernel, _ = operands(torch.float32, True)
    x, w, idx = routed(2)
    with pytest.raises(ValueError, match="w13_scale: expected"):
        fused_moe(x, w, idx, **{**kernel, "w13_scale": kernel["w13_scale"][:, :1]})
    with pytest.raises(ValueError, match="both"):
        fused_moe(x, w, idx, kernel["w13"], kernel["w2"], w13_scale=kernel["w13_scale"], block_shape=(16, 16))
    with pytest.raises(ValueError, match="need their block scales"):
        fused_moe(x, w, idx, kernel["w13"].to(torch.float8_e4m3fn), kernel["w2"].to(torch.float8_e4m3fn))
    # 24-wide scale blocks: no power-of-two K tile lies inside one.
    (q13, s13), (q2, s2) = (quantize_fp8_blocks(m, (24, 24)) for m in experts())
    with pytest.raises(ValueError, match="dividing the scale block"):
        fused_moe(x, w, idx, q13.float(), q2.float(), w13_scale=s13, w2_scale=s2, block_shape=(24, 24))


def test_hook_op_is_one_node_for_torch_compile():
    """The Triton ops call the op form: torch.compile(fullgraph=True) must keep it whole (no
    graph break, its fake gives the output shape) and get fused_moe's result."""
    from agent.backends.local.triton_moe import fused_moe_op

    kernel, _ = operands(torch.float32, True)
    x, w, idx = routed(3, seed=4)
    scales = (kernel["w13_scale"], kernel["w2_scale"], BLOCK, BLOCK)
    compiled = torch.compile(fused_moe_op, fullgraph=True, backend="aot_eager")
    out = compiled(x, w, idx, kernel["w13"], kernel["w2"], *scales)
    torch.testing.assert_close(out, fused_moe(x, w, idx, **kernel), **TOL[torch.float32])


def test_a_model_on_the_triton_ops_computes_what_it_computes_on_the_torch_ops(tmp_path):
    """The Triton kind end to end on a tiny checkpoint: its MoE blocks route, then call the op form of the
    kernels (the grouped path for the 40-token prefill's 80 pairs, the decode path for single tokens)."""
    from agent.backends.local.checkpoint_writer import init_checkpoint
    from agent.backends.local.generate import Generator, SamplingParams
    from agent.backends.local.loader import load_model

    init_checkpoint(tmp_path, "tiny", seed=3)
    prompt = list(range(5, 45))
    logits, tokens = {}, {}
    for ops in ("triton", "torch"):
        model = load_model(tmp_path, dtype="float32", ops=ops)
        assert model.ops.name == ops
        model.setup_caches(256)
        with torch.inference_mode():
            logits[ops] = model(torch.tensor([prompt]), torch.arange(len(prompt)))
        tokens[ops] = list(Generator(model).generate(prompt, 8, SamplingParams(greedy=True)))
    torch.testing.assert_close(logits["triton"], logits["torch"], **TOL[torch.float32])
    assert tokens["triton"] == tokens["torch"]
