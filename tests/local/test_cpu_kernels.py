"""Our C++ CPU kernels (agent/backends/local/csrc/cpu_kernels.cpp) against independent references: F.linear,
the naive expert loop with the PyTorch router, SDPA with a causal mask, and the whole model with the
kernels switched off. Shapes include dims that are not multiples of the kernels' 16-wide vectors or
4-row blocks, and two threads (the conftest's setting) so the row split runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from agent.backends.local import cpu_kernels
from agent.backends.local.compiled import _inductor_configs
from agent.backends.local.experts import route
from agent.backends.local.generate import Generator, SamplingParams
from agent.backends.local.loader import load_model
from agent.backends.local.ops import select_ops
from tests.local.reference import moe_reference

DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(scope="module", autouse=True)
def _built():
    assert cpu_kernels.available(), "the CPU kernels must build on the CI machine (g++ and ninja)"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    """fp32: summation order only. bf16: the same roundings as PyTorch, so at most one bf16 step apart."""
    tol = 1e-5 if dtype == torch.float32 else 8e-3
    scale = max(ref.abs().max().item(), 1.0)
    diff = (out.float() - ref.float()).abs().max().item()
    assert diff <= tol * scale, (diff, scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 32])
@pytest.mark.parametrize("n, k", [(77, 40), (256, 256), (9, 19), (600, 128)])
def test_matvec_equals_linear(dtype, rows, n, k):
    x = torch.randn(rows, k, generator=gen(1)).to(dtype)
    w = torch.randn(n, k, generator=gen(2)).to(dtype)
    out = torch.ops.mmx.matvec(x.view(1, rows, k), w)
    assert out.shape == (1, rows, n) and out.dtype == dtype
    close(out[0], F.linear(x.float(), w.float()), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 3, 32])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("experts, hidden, inter, top_k", [(32, 256, 128, 4), (5, 40, 19, 3)])
def test_moe_decode_equals_router_and_expert_loop(dtype, tokens, with_bias, experts, hidden, inter, top_k):
    g = gen(3)
    x = torch.randn(tokens, hidden, generator=g).to(dtype)
    gate = torch.randn(experts, hidden, generator=g) / hidden**0.5  # unsaturated sigmoids: no ties
    bias = torch.randn(experts, generator=g) * 0.3 if with_bias else None
    w1, w3 = (torch.randn(experts, inter, hidden, generator=g).to(dtype) / hidden**0.5 for _ in "13")
    w2 = torch.randn(experts, hidden, inter, generator=g).to(dtype) / inter**0.5
    weights, idx = route(x, gate, bias, top_k)
    ref = moe_reference(x, weights, idx, w1, w3, w2)
    out = torch.ops.mmx.moe_decode(x, gate, bias, torch.cat((w1, w3), dim=1), w2, top_k)
    assert out.shape == x.shape and out.dtype == dtype
    close(out, ref, dtype)
    assert ref.abs().max() > 0.1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads, kv_heads, dim", [(8, 2, 32), (6, 3, 20)])
@pytest.mark.parametrize("position", [0, 37, 63])
def test_decode_attention_equals_causal_sdpa(dtype, heads, kv_heads, dim, position):
    g = gen(4)
    q = torch.randn(1, heads, 1, dim, generator=g).to(dtype)
    k, v = (torch.randn(1, kv_heads, 64, dim, generator=g).to(dtype) for _ in "kv")
    pos = torch.tensor([position])
    mask = torch.arange(64)[None, :] <= pos[:, None]
    ref = F.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=mask, scale=dim**-0.5, enable_gqa=True
    )
    k[:, :, position + 1 :] = float("nan")  # rows past the position must not be read at all
    out = torch.ops.mmx.decode_attention(q, k, v, pos, dim**-0.5)
    close(out, ref, dtype)


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(1, 16)
    with pytest.raises(RuntimeError, match="does not match w"):
        torch.ops.mmx.matvec(x, torch.randn(8, 15))
    with pytest.raises(RuntimeError, match="float32 or bfloat16 only"):
        torch.ops.mmx.matvec(x.half(), torch.randn(8, 16).half())
    with pytest.raises(RuntimeError, match="w is Float but x is BFloat16"):  # bf16 under fp32 only
        torch.ops.mmx.matvec(x.bfloat16(), torch.randn(8, 16))
    q, k = torch.randn(1, 4, 1, 8), torch.randn(1, 2, 10, 8)
    with pytest.raises(RuntimeError, match="outside the cache of 10"):
        torch.ops.mmx.decode_attention(q, k, k, torch.tensor([10]), 1.0)
    with pytest.raises(RuntimeError, match="the cache must be in q's dtype"):
        torch.ops.mmx.decode_attention(q, k.bfloat16(), k.bfloat16(), torch.tensor([3]), 1.0)
    with pytest.raises(RuntimeError, match="top_k 9 out of range for 8 experts"):
        torch.ops.mmx.moe_decode(x, torch.randn(8, 16), None, torch.randn(8, 6, 16), torch.randn(8, 16, 3), 9)
    with pytest.raises(RuntimeError, match="w13 is BFloat16 but w2 is Float"):
        w13 = torch.randn(8, 6, 16).bfloat16()
        torch.ops.mmx.moe_decode(x, torch.randn(8, 16), None, w13, torch.randn(8, 16, 3), 2)


@pytest.mark.parametrize("tokens", [1, 2, 3, 5, 32])
def test_bf16_weights_under_fp32_activations_give_the_bits_of_their_fp32_copies(tokens):
    """An fp32 model keeps exactly-bf16 weights in bf16 (loader's bf16_weights): the kernels widen them as
    they read, so the projections and the MoE block return exactly what fp32 copies would give."""
    g = gen(6)
    x = torch.randn(tokens, 200, generator=g)
    w = torch.randn(77, 200, generator=g).bfloat16()
    assert torch.equal(torch.ops.mmx.matvec(x, w), torch.ops.mmx.matvec(x, w.float()))
    experts, hidden, inter = 8, 200, 72
    gate = torch.randn(experts, hidden, generator=g) / hidden**0.5
    w13 = (torch.randn(experts, 2 * inter, hidden, generator=g) / hidden**0.5).bfloat16()
    w2 = (torch.randn(experts, hidden, inter, generator=g) / inter**0.5).bfloat16()
    out = torch.ops.mmx.moe_decode(x, gate, None, w13, w2, 3)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.ops.mmx.moe_decode(x, gate, None, w13.float(), w2.float(), 3))
    assert out.abs().max() > 0.1


def test_model_with_kernels_equals_model_without(random_checkpoint):
    """Greedy decoding (prefill of a short prompt and one-token steps, both on the kernels) gives the same
    tokens and near-identical logits as the PyTorch ops, on the same (bf16-stored) weights."""
    prompt = list(range(5, 25))

    def run(ops):
        model = load_model(random_checkpoint, dtype="float32", bf16_weights=True, ops=ops)
        assert model.ops.name == ops
        generator = Generator(model)
        tokens = list(generator.generate(prompt, 40, SamplingParams(greedy=True)))
        with torch.inference_mode():
            logits = model(torch.tensor([[tokens[-1]]]), torch.tensor([len(prompt) + 40]), kv_len=256)
        return tokens, logits

    fast_tokens, fast_logits = run("cpu-kernels")
    slow_tokens, slow_logits = run("torch")
    assert fast_tokens == slow_tokens
    assert (fast_logits - slow_logits).abs().max().item() <= 1e-4


def test_switching_the_kernels_off_loads_plain_torch_and_says_so_once(random_checkpoint):
    """MMX_AGENT_CPU_KERNELS=0 picks the torch ops, and their storage plan (fp32 copies of bf16 weights),
    for every model the process loads, with one warning (a fresh process: the warning is once per process)."""
    assert load_model(random_checkpoint, dtype="float32").ops.name == "cpu-kernels"
    code = (
        "import sys, warnings, torch\n"
        "from agent.backends.local.loader import load_model\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    models = [load_model(sys.argv[1], dtype='float32') for _ in range(2)]\n"
        "print([(m.ops.name, str(m.lm_head.dtype)) for m in models], [str(w.message) for w in caught])\n"
    )
    env = dict(os.environ, MMX_AGENT_CPU_KERNELS="0")
    result = subprocess.run(
        [sys.executable, "-c", code, str(random_checkpoint)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "[('torch', 'torch.float32'), ('torch', 'torch.float32')]" in result.stdout
    assert result.stdout.count("CPU decode kernels switched off (MMX_AGENT_CPU_KERNELS=0)") == 1


@pytest.mark.parametrize("ops, shims", [("cpu-kernels", True), ("torch", False)])
def test_compiled_step_calls_the_kernels_through_their_c_entry_points(ops, shims):
    configs = _inductor_configs(select_ops("cpu", torch.float32, ops))
    assert ("aot_inductor.custom_ops_to_c_shims" in configs) == shims
    if shims:
        entry_points = configs["aot_inductor.custom_ops_to_c_shims"]
        names = {op.name() for op in entry_points}
        assert names == {"mmx::matvec", "mmx::moe_decode", "mmx::decode_attention"}


def test_without_a_compiler_the_build_fails_with_one_warning(tmp_path):
    """A fresh build directory and a compiler that does not exist: `available()` is False with a warning,
    and the model still decodes (PyTorch ops)."""
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path), CXX=str(tmp_path / "no-such-compiler"))
    code = (
        "import warnings, torch\n"
        "from agent.backends.local import cpu_kernels\n"
        "from agent.backends.local.ops import select_ops\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    ops = select_ops('cpu', torch.float32)\n"
        "    out = ops.linear(torch.ones(1, 4), torch.ones(3, 4))\n"
        "    assert cpu_kernels.available() is False and ops.name == 'torch'\n"
        "print(out.tolist(), [str(w.message)[:120] for w in caught])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "[[4.0, 4.0, 4.0]]" in result.stdout
    assert result.stdout.count("CPU decode kernels unavailable") == 1
    assert "no C++ compiler" in result.stdout  # the reason, not the builder's whole command line


def quantize_fp8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[E, R, C] -> (FP8 e4m3, fp32 scales per 128x128 block [E, ceil(R/128), ceil(C/128)]), as checkpoints
    store them."""
    e, r, c = w.shape
    rb, cb = -(-r // 128), -(-c // 128)
    padded = torch.zeros(e, rb * 128, cb * 128)
    padded[:, :r, :c] = w
    blocks = padded.view(e, rb, 128, cb, 128)
    scale = blocks.abs().amax(dim=(2, 4)) / 448
    q = (blocks / scale[:, :, None, :, None]).view(e, rb * 128, cb * 128)[:, :r, :c]
    return q.to(torch.float8_e4m3fn), scale


def block_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r, c = q.shape[1:]
    return q.float() * scale.repeat_interleave(128, 1)[:, :r].repeat_interleave(128, 2)[:, :, :c]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 5])
@pytest.mark.parametrize(
    "experts, hidden, inter, top_k", [(8, 256, 192, 2), (5, 40, 19, 3), (16, 300, 130, 4)]
)
def test_moe_decode_on_fp8_experts_equals_the_dequantized_loop(dtype, tokens, experts, hidden, inter, top_k):
    """Random weights quantized as checkpoints are: subnormals and most e4m3 bit patterns occur, and partial
    128-blocks on both axes."""
    g = gen(5)
    w13 = torch.randn(experts, 2 * inter, hidden, generator=g) / hidden**0.5
    w2 = torch.randn(experts, hidden, inter, generator=g) / inter**0.5
    (q13, s13), (q2, s2) = quantize_fp8(w13), quantize_fp8(w2)
    gate = torch.randn(experts, hidden, generator=g) / hidden**0.5
    x = torch.randn(tokens, hidden, generator=g).to(dtype)
    weights, idx = route(x, gate, None, top_k)
    d13, d2 = block_dequantize(q13, s13), block_dequantize(q2, s2)
    ref = moe_reference(x, weights, idx, d13[:, :inter], d13[:, inter:], d2)
    rows13, rows2 = (
        s.repeat_interleave(128, 1)[:, : q.shape[1]].contiguous() for q, s in ((q13, s13), (q2, s2))
    )
    out = torch.ops.mmx.moe_decode(x, gate, None, q13, q2, top_k, rows13, rows2)
    close(out, ref, dtype)
    bits = q13.view(torch.uint8).int()
    assert ((bits >> 3 & 15 == 0) & (bits & 7 != 0)).any()  # subnormals were decoded too
    if hidden == 300:
        assert len(torch.unique(bits)) > 200  # and most other bit patterns

    with pytest.raises(RuntimeError, match="need fp32 scales"):
        torch.ops.mmx.moe_decode(x, gate, None, q13, q2, top_k, rows13[:, :1], rows2)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="builds for an x86-64 target")
def test_the_kernels_built_without_avx512_pass_the_same_tests(tmp_path):
    """Many CPUs have AVX2 but not AVX-512: build for x86-64-v3 and run this file's kernel tests on it."""
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path), MMX_AGENT_CPU_MARCH="x86-64-v3")
    kernel_tests = "matvec or moe_decode or decode_attention or bad_arguments or bf16_weights"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", kernel_tests],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    (library,) = tmp_path.glob("*/*.so")  # and it was the AVX2 build that ran: no 512-bit registers
    assert "zmm" not in subprocess.run(["objdump", "-d", str(library)], capture_output=True, text=True).stdout
