"""The decode step (one token through the model at a static cache size) compiled ahead of time.

On CPU the step is exported and built by AOTInductor into a shared library that runs the whole step in
C++: a `torch.compile`d module pays tens of microseconds per call in guards and in wrapping each of its
~50 parameter and buffer inputs, which at small sizes is a large part of a token's time. The library is
built without weights; it is pointed at the model's own parameters and KV-cache buffers
(`user_managed`), so nothing is copied and the eager prefill and the compiled decode share one cache.

On CUDA, torch.compile with CUDA graphs does the same job.

Either way the step is traced with the model's `ops.traced()` (ops.py): one-token forms the compiler fuses
into one pass over the weights. The eager prefill keeps the model's own ops.

The step has static shapes, so it is built for one cache size; `Generator` builds it again when the
cache grows. Built CPU steps are kept in $XDG_CACHE_HOME/mmx-agent/decode-steps (default ~/.cache/...),
keyed by what they depend on (`_step_key`), so only the first run on a machine pays the build (and a
second same-shape model in one process, which gets a private build: see `_aot_cpu_step`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from agent.backends.local import cpu_kernels
from agent.backends.local.model import M2Transformer
from agent.backends.local.ops import Ops
from agent.backends.local.progress import notice
from agent.config import user_cache_dir

DecodeStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_LOADED: set[str] = set()  # step keys whose cached package this process has loaded
KEEP_PACKAGES = 32  # built steps kept in the cache, most recently used first (~2 MB each)


def compile_decode_step(model: M2Transformer) -> DecodeStep:
    """(token [1, 1], input_pos [1]) -> fp32 logits [1, 1, vocab], writing K/V into the model's cache
    at input_pos. The model's caches must be set up (the step is specialised to their size)."""
    if model.max_seq_len == 0:
        raise RuntimeError("set up the model's caches before compiling the decode step")
    if model.device.type != "cpu":
        compiled = torch.compile(model, fullgraph=True, dynamic=False, mode="reduce-overhead")
        traced = model.ops.traced()

        def step(token: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
            with _computing_with(model, traced):  # what torch.compile traces (and guards on)
                return compiled(token, input_pos)

        return step
    return _aot_cpu_step(model)


@contextlib.contextmanager
def _computing_with(model: M2Transformer, ops: Ops) -> Iterator[None]:
    eager, model.ops = model.ops, ops
    try:
        yield
    finally:
        model.ops = eager


def _aot_cpu_step(model: M2Transformer) -> DecodeStep:
    configs = _inductor_configs(model.ops)
    key = _step_key(model, configs)
    if key in _LOADED:
        # A second model of this shape in this process: loading the same package again gives a runner
        # that shares the first one's constants (measured: it decodes with the other model's weights),
        # so this one gets a build of its own, not cached.
        with tempfile.TemporaryDirectory(prefix="mmx-decode-") as tmp:
            private = Path(tmp) / "decode.pt2"
            _build_package(model, configs, private)
            runner = torch._inductor.aoti_load_package(str(private))
    else:
        package = user_cache_dir() / "decode-steps" / f"{key}.pt2"
        runner = None
        if package.exists():
            try:
                runner = torch._inductor.aoti_load_package(str(package))
                package.touch()  # recently used: pruned last
            except Exception:  # noqa: BLE001 - a damaged file (an interrupted copy, a full disk): rebuild
                runner = None
        if runner is None:
            _build_package(model, configs, package)
            runner = torch._inductor.aoti_load_package(str(package))
            _prune(package.parent)
        _LOADED.add(key)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    names = runner.get_constant_fqns()
    missing = [name for name in names if name not in tensors]
    if missing:  # a model change the exporter saw differently: fail loudly, never run on garbage
        raise RuntimeError(f"compiled decode step wants tensors the model lacks: {missing[:5]}")
    runner.load_constants({name: tensors[name] for name in names}, check_full_update=True, user_managed=True)
    # The runner's own __call__ parses its pytree specs from JSON on every call (~45 us of a ~400 us
    # step); the step's inputs and output are plain tensors, so call the loader with the flat list.
    run = getattr(getattr(runner, "loader", None), "run", None)

    def step(token: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        if run is None:  # a torch without the loader attribute
            return runner(token, input_pos)
        return run([token, input_pos])[0]

    return step


def _build_package(model: M2Transformer, configs: dict, package: Path) -> None:
    """Export and compile the step into `package` (written under a temporary name, then renamed, so a
    concurrent run never loads half a file)."""
    token = torch.zeros(1, 1, dtype=torch.long)
    input_pos = torch.zeros(1, dtype=torch.long)
    package.parent.mkdir(parents=True, exist_ok=True)
    notice(
        f"compiling the decode step for a {model.max_seq_len:,}-token cache "
        "(once per machine, model shape and cache size; about a minute)"
    )
    started = time.monotonic()
    with torch.inference_mode(), warnings.catch_warnings(), _computing_with(model, model.ops.traced()):
        warnings.simplefilter("ignore")  # export's notes on inference-mode tensors; not actionable here
        program = torch.export.export(model, (token, input_pos))
        partial = package.with_name(f"{package.stem}.{os.getpid()}.partial.pt2")
        try:
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(partial), inductor_configs=configs
            )
            os.replace(partial, package)
        finally:
            partial.unlink(missing_ok=True)
    notice(f"compiled the decode step in {time.monotonic() - started:.0f} s")


def _prune(directory: Path, keep: int = KEEP_PACKAGES) -> None:
    """Delete all but the `keep` most recently used packages: every new model shape, torch or version of
    our code adds one. (A process that loses a package to this between its check and its load rebuilds.)"""
    packages = sorted(directory.glob("*.pt2"), key=lambda path: path.stat().st_mtime, reverse=True)
    for stale in packages[keep:]:
        stale.unlink(missing_ok=True)


def _step_key(model: M2Transformer, configs: dict) -> str:
    """What the built library depends on: the architecture, every tensor's name, dtype and shape (not the
    weights, which are bound at load), the kind of ops, our model code and kernels, torch, and the CPU the
    code was generated for."""
    here = Path(__file__).parent
    sources = [here / name for name in ("model.py", "ops.py", "experts.py", "compiled.py")]
    sources.append(cpu_kernels.SOURCE)
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())  # FP8 experts change these
    shape = dict(
        args=asdict(model.args),
        tensors=sorted((name, str(t.dtype), tuple(t.shape)) for name, t in tensors.items()),
        dtype=str(model.dtype),
        ops=model.ops.name,
        cache=(model.max_seq_len, model.max_batch),
        torch=torch.__version__,
        cpu=cpu_kernels.cpu_flags(),
        configs={key: repr(value) for key, value in configs.items()},
    )
    digest.update(json.dumps(shape, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def _inductor_configs(ops: Ops) -> dict:
    configs = {"aot_inductor.package_constants_in_so": False}
    shims = ops.c_shims()
    if shims:
        configs["aot_inductor.custom_ops_to_c_shims"] = shims
    return configs
