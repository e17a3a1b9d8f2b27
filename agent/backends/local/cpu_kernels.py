"""Our C++ CPU decode kernels (csrc/cpu_kernels.cpp): `torch.ops.mmx.matvec`, `torch.ops.mmx.moe_decode`
and `torch.ops.mmx.decode_attention`.

They are compiled on first use for this machine's CPU (-march=native; about 15 s, once: torch keeps the
build under ~/.cache/torch_extensions and reuses it while the source and flags are unchanged). The build
name carries a hash of the CPU's feature flags, so a home directory shared with an older CPU gets its own
build rather than an illegal instruction. Without a C++ compiler, or with MMX_AGENT_CPU_KERNELS=0, the
model keeps its PyTorch paths; the reason is warned once.

The ops also have shape-only ("fake") implementations, so `torch.export` traces through them and the
compiled decode step (compiled.py) calls the same kernels.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "cpu_kernels.cpp"
DTYPES = (torch.float32, torch.bfloat16)


def cpu_flags() -> str:
    """This CPU's feature flags (what -march=native code may use)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return os.uname().machine


def _ninja_on_path() -> None:
    """torch's builder runs `ninja` from PATH; the pip `ninja` package puts it beside the interpreter."""
    if shutil.which("ninja"):
        return
    try:
        import ninja  # noqa: PLC0415  (optional: the `local` extra installs it)
    except ImportError:
        return
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def enabled() -> bool:
    """MMX_AGENT_CPU_KERNELS=0 turns the kernels off (read per call, so a test can compare both paths)."""
    return os.environ.get("MMX_AGENT_CPU_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Build (first time) and load the kernels; False, with one warning saying why, when they cannot be."""
    from torch.utils import cpp_extension  # noqa: PLC0415  (slow import; only when kernels are wanted)

    _ninja_on_path()
    # MMX_AGENT_CPU_MARCH: another target than this CPU, e.g. x86-64-v3 (AVX2), to test the paths that
    # do without AVX-512.
    march = os.environ.get("MMX_AGENT_CPU_MARCH", "native")
    name = "mmx_cpu_kernels_" + hashlib.sha256(f"{march} {cpu_flags()}".encode()).hexdigest()[:10]
    try:
        library = cpp_extension.load(
            name=name,
            sources=[str(SOURCE)],
            extra_cflags=["-O3", f"-march={march}", "-fopenmp", "-Wno-psabi"],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
        )
    except Exception as exc:  # no compiler, no ninja, a broken toolchain: decode still works, slower
        warnings.warn(f"CPU decode kernels unavailable, using PyTorch ops instead: {exc}", stacklevel=2)
        return False
    # Global symbols, so that the compiled decode step's library finds the C entry points below.
    ctypes.CDLL(library, mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    _register_fakes()
    return True


def c_shims() -> dict:
    """AOTInductor's `custom_ops_to_c_shims`: the compiled decode step calls each op through its C entry
    point (csrc/cpu_kernels.cpp, extern "C") rather than through the dispatcher, ~5 us less per call."""
    ops = torch.ops.mmx
    return {
        ops.matvec.default: [
            "AOTITorchError aoti_torch_cpu_matvec(AtenTensorHandle, AtenTensorHandle, AtenTensorHandle*)"
        ],
        ops.moe_decode.default: [
            "AOTITorchError aoti_torch_cpu_moe_decode(AtenTensorHandle, AtenTensorHandle, AtenTensorHandle*, "
            "AtenTensorHandle, AtenTensorHandle, int64_t, AtenTensorHandle*, AtenTensorHandle*, AtenTensorHandle*)"
        ],
        ops.decode_attention.default: [
            "AOTITorchError aoti_torch_cpu_decode_attention(AtenTensorHandle, AtenTensorHandle, AtenTensorHandle, "
            "AtenTensorHandle, double, AtenTensorHandle*)"
        ],
    }


def _register_fakes() -> None:
    @torch.library.register_fake("mmx::matvec")
    def _(x, w):
        return x.new_empty((*x.shape[:-1], w.shape[0]))

    @torch.library.register_fake("mmx::decode_attention")
    def _(q, k, v, input_pos, scale):
        return torch.empty_like(q)

    @torch.library.register_fake("mmx::moe_decode")
    def _(x, gate, bias, w13, w2, top_k, w13_scale=None, w2_scale=None):
        return torch.empty_like(x)


# Up to this many tokens the kernels beat torch's matmuls (they read each weight once for all tokens):
# oneDNN's bf16 matmul costs ~40 us per call below M=64, and a 32-token prefill of the `small` preset took
# 8.0 ms against 18.9 ms in bf16, 9.0 ms against 13.4 ms in fp32 (AMX dev box, 1 thread).
FEW_TOKENS = 32


def active() -> bool:
    """Enabled and built: the model's CPU paths will call the kernels."""
    return enabled() and available()


def usable(tokens: int, x: torch.Tensor, w: torch.Tensor, *, limit: int = FEW_TOKENS) -> bool:
    """Whether the kernels take this call: a few tokens on the CPU, fp32 or bf16 weights matching x, bf16
    weights under fp32 x (loader's bf16_weights), or FP8 experts."""
    return (
        tokens <= limit
        and x.device.type == "cpu"
        and x.dtype in DTYPES
        and (w.dtype in (x.dtype, torch.float8_e4m3fn) or (x.dtype, w.dtype) == DTYPES)  # FP8: moe_decode
        and active()
    )
