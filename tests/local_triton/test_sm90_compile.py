"""The kernels built for an H100/H200 (sm_90) by the real Triton compiler and ptxas, without a GPU, from
exactly the arguments `fused_moe` passes at real width (meta tensors stand in for the weights).

The interpreter checks the arithmetic; this checks what it cannot: that the kernels compile for the
GPU (typing, layouts, `tl.dot` shapes, FP8 widening) with the default tiles, and that those tiles fit in
an SM's shared memory. Nothing here runs a kernel.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

from agent.backends.local.triton_moe import fused_moe, quantize_fp8_blocks
from tests.local_triton.conftest import INTERPRETED

pytestmark = [
    pytest.mark.usefixtures("triton_installed"),
    pytest.mark.skipif(INTERPRETED, reason="this process's Triton is interpreted"),
]
H, INTER, E, K = 3072, 1536, 256, 8
SHARED_LIMIT = 232448  # bytes of shared memory one block may use on sm_90
KERNELS = "agent.backends.local.moe_kernels"


class CompileOnLaunch:
    """Stands in for Triton's launcher: `kernel[grid](**kwargs)` compiles for sm_90 instead of running,
    specialising the arguments the way the JIT does on a device (alignment, ints equal to 1)."""

    def __init__(self, fn, built: list):
        self.fn, self.built = fn, built

    def __getitem__(self, grid):
        return lambda **kwargs: self.built.append(self.compile(kwargs))

    def compile(self, kwargs):
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.backends.nvidia.compiler import CUDABackend
        from triton.compiler import ASTSource

        specialize = pytest.importorskip("triton._C.libtriton").native_specialize_impl  # private API
        options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages")}
        signature, constexprs, attrs = {}, {}, {}
        for i, p in enumerate(self.fn.params):
            value = kwargs[p.name]
            if p.is_constexpr:
                signature[p.name], constexprs[p.name] = "constexpr", value
                continue
            kind, attr = specialize(CUDABackend, value, False, True, True)
            signature[p.name] = kind
            if kind == "constexpr":
                constexprs[p.name] = value
            elif attr:
                attrs[(i,)] = CUDABackend.parse_attr(attr)
        src = ASTSource(self.fn, signature, constexprs, attrs)
        return self.fn.__name__, triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)


@pytest.fixture
def built(monkeypatch):
    import importlib

    real = importlib.import_module(KERNELS)
    out: list = []
    names = ["gemv_gate_up", "gemv_down_reduce", "grouped_gate_up", "grouped_down"]
    fake = types.SimpleNamespace(**{n: CompileOnLaunch(getattr(real, n), out) for n in names})
    monkeypatch.setitem(sys.modules, KERNELS, fake)
    return out


def real_layer(fp8: bool):
    meta = dict(device="meta")
    if not fp8:
        w13, w2 = torch.empty(E, 2 * INTER, H, dtype=torch.bfloat16, **meta), torch.empty(E, H, INTER, **meta)
        return dict(w13=w13, w2=w2.to(torch.bfloat16))
    (q13, s13), (q2, s2) = (
        quantize_fp8_blocks(torch.empty(E, o, i, **meta)) for o, i in ((2 * INTER, H), (H, INTER))
    )
    return dict(w13=q13, w2=q2, w13_scale=s13, w2_scale=s2)


# Decode, then grouped with the small and the large tiles; FP8 x FP8 dots on the prefill tiles.
CASES = [(w, n) for w in ("bf16", "fp8") for n in (1, 64, 4096)] + [("fp8-activations", 4096)]


@pytest.mark.parametrize("weights,n", CASES)
def test_kernels_compile_for_sm90(built, weights, n):
    x = torch.empty(n, H, dtype=torch.bfloat16, device="meta")
    routing = torch.empty(n, K, device="meta"), torch.empty(n, K, dtype=torch.long, device="meta")
    fp8_act = weights == "fp8-activations"
    fused_moe(x, *routing, **real_layer(weights != "bf16"), fp8_activations=fp8_act)
    assert len(built) == 2
    for name, kernel in built:
        assert kernel.asm["cubin"], name
        assert kernel.metadata.shared <= SHARED_LIMIT, (name, kernel.metadata.shared)
