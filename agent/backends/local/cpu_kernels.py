"""Our C++ CPU decode kernels (csrc/cpu_kernels.cpp): `torch.ops.mmx.matvec`, `torch.ops.mmx.moe_decode`,
`torch.ops.mmx.decode_attention` and its batched form `torch.ops.mmx.decode_attention_rows`.

They are compiled on first use for this machine's CPU (-march=native; 15-30 s, once) and kept under
$XDG_CACHE_HOME/mmx-agent/cpu-kernels (default ~/.cache/...; TORCH_EXTENSIONS_DIR overrides it). A build
is named by a hash of everything that changes the binary: the source, torch's version and include
path, the compiler, the flags and target, and the CPU's feature flags. So two virtual environments or
checkouts never rebuild each other's kernels, and a home directory shared with an older CPU gets its
own build rather than an illegal instruction. The build runs in a child process into a private
directory and is moved into place when it is complete; a lock file makes concurrent first uses build
once. Without a C++ compiler, or with MMX_AGENT_CPU_KERNELS=0, models load with plain PyTorch ops
(ops.py); the reason is warned once.

The ops also have shape-only ("fake") implementations, so `torch.export` traces through them and the
compiled decode step (compiled.py) calls the same kernels.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from agent.backends.local.progress import notice
from agent.config import user_cache_dir

SOURCE = Path(__file__).with_name("csrc") / "cpu_kernels.cpp"
DTYPES = (torch.float32, torch.bfloat16)
CFLAGS = ["-O3", "-fopenmp", "-Wno-psabi"]
LDFLAGS = ["-fopenmp"]
BUILD_SECONDS = 900  # a first build takes 15-30 s on a laptop; leave room for a loaded machine


def cpu_flags() -> str:
    """This CPU's feature flags (what -march=native code may use)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return os.uname().machine


def _ninja_dir() -> str | None:
    """torch's builder runs `ninja` from PATH; the pip `ninja` package puts it beside the interpreter."""
    if shutil.which("ninja"):
        return None
    try:
        import ninja  # noqa: PLC0415  (optional: the `local` extra installs it)
    except ImportError:
        return None
    return ninja.BIN_DIR


def enabled() -> bool:
    """MMX_AGENT_CPU_KERNELS=0 turns the kernels off (read when a model is loaded: ops.select_ops)."""
    return os.environ.get("MMX_AGENT_CPU_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_root() -> Path:
    override = os.environ.get("TORCH_EXTENSIONS_DIR")
    return Path(override) if override else user_cache_dir() / "cpu-kernels"


def _compiler() -> str:
    return os.environ.get("CXX") or "c++"


def build_name(march: str) -> str:
    """The build's name: a hash of everything that changes the binary (see the module docstring)."""
    from torch.utils import cpp_extension  # noqa: PLC0415  (slow import; only when kernels are wanted)

    parts = [
        SOURCE.read_bytes(),
        torch.__version__.encode(),
        *(path.encode() for path in cpp_extension.include_paths()),
        _compiler().encode(),
        " ".join([*CFLAGS, f"-march={march}", *LDFLAGS]).encode(),
        cpu_flags().encode(),
    ]
    return "mmx_cpu_kernels_" + hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


# The child process that builds: torch's JIT builder, pointed at a private directory.
_BUILD_SCRIPT = """
import sys
from torch.utils import cpp_extension
name, source, directory, cflags, ldflags = sys.argv[1:6]
cpp_extension.load(name=name, sources=[source], build_directory=directory, extra_cflags=cflags.split(),
                   extra_ldflags=ldflags.split(), is_python_module=False)
"""


def _build(name: str, march: str, library: Path) -> None:
    """Builds the kernels into `library`; RuntimeError with a short reason when that fails."""
    compiler = _compiler()
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler ({compiler!r} not found; install g++)")
    env = dict(os.environ)
    ninja_dir = _ninja_dir()
    if ninja_dir:
        env["PATH"] = ninja_dir + os.pathsep + env.get("PATH", "")
    notice("building the CPU decode kernels for this processor (once per machine and torch; 15-30 s)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"{name}.", dir=library.parent.parent) as scratch:
        command = [
            sys.executable,
            "-c",
            _BUILD_SCRIPT,
            name,
            str(SOURCE),
            scratch,
            " ".join([*CFLAGS, f"-march={march}"]),
            " ".join(LDFLAGS),
        ]
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, errors="replace", timeout=BUILD_SECONDS
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the build took more than {BUILD_SECONDS} s") from None
        built = Path(scratch) / f"{name}.so"
        if done.returncode != 0 or not built.is_file():
            raise RuntimeError(f"the build failed: {_build_error(done.stdout + done.stderr)}")
        library.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, library)  # complete or absent: never a half-written library
    notice(f"built the CPU decode kernels in {time.monotonic() - started:.0f} s ({library})")


def _build_error(output: str) -> str:
    """The compiler's first error lines, not the whole build log."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith("[")]
    picked = (errors or lines)[:3] if errors else lines[-3:]
    return " | ".join(line[:300] for line in picked) or "no output"


def library_path(march: str) -> Path:
    name = build_name(march)
    return cache_root() / name / f"{name}.so"


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Build (first time) and load the kernels; False, with one warning saying why, when they cannot be."""
    # MMX_AGENT_CPU_MARCH: another target than this CPU, e.g. x86-64-v3 (AVX2), to test the paths that
    # do without AVX-512.
    march = os.environ.get("MMX_AGENT_CPU_MARCH", "native")
    try:
        library = library_path(march)
        library.parent.mkdir(parents=True, exist_ok=True)
        with (library.parent / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel if we die: never stale
            if not library.is_file():
                _build(library.parent.name, march, library)
        torch.ops.load_library(str(library))
    except Exception as exc:  # no compiler, no ninja, a broken toolchain: decode still works, slower
        warnings.warn(f"CPU decode kernels unavailable, using PyTorch ops instead: {exc}", stacklevel=2)
        return False
    # Global symbols, so that the compiled decode step's library finds the C entry points below.
    ctypes.CDLL(str(library), mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)
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

    @torch.library.register_fake("mmx::decode_attention_rows")
    def _(q, k, v, rows, input_pos, scale):
        return torch.empty_like(q)

    @torch.library.register_fake("mmx::moe_decode")
    def _(x, gate, bias, w13, w2, top_k, w13_scale=None, w2_scale=None):
        return torch.empty_like(x)


def active() -> bool:
    """Enabled and built: models loaded on the CPU will call the kernels."""
    if not enabled():
        _warn_disabled()
        return False
    return available()


@functools.lru_cache(maxsize=1)
def _warn_disabled() -> None:
    warnings.warn(
        "CPU decode kernels switched off (MMX_AGENT_CPU_KERNELS=0): using PyTorch ops", stacklevel=3
    )
