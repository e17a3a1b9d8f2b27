"""The decode step (one token through the model at a static cache size) compiled ahead of time.

On CPU the step is exported and built by AOTInductor into a shared library that runs the whole step in
C++: a `torch.compile`d module pays tens of microseconds per call in guards and in wrapping each of its
~50 parameter and buffer inputs, which at small sizes is a large part of a token's time. The library is
built without weights; it is pointed at the model's own parameters and KV-cache buffers
(`user_managed`), so nothing is copied and the eager prefill and the compiled decode share one cache.

On CUDA, torch.compile with CUDA graphs does the same job.

The step has static shapes, so it is built for one cache size; `Generator` builds it again when the
cache grows.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from agent.backends.local import cpu_kernels
from agent.backends.local.model import M2Transformer

DecodeStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def compile_decode_step(model: M2Transformer) -> DecodeStep:
    """(token [1, 1], input_pos [1]) -> fp32 logits [1, 1, vocab], writing K/V into the model's cache
    at input_pos. The model's caches must be set up (the step is specialised to their size)."""
    if model.max_seq_len == 0:
        raise RuntimeError("set up the model's caches before compiling the decode step")
    if model.device.type != "cpu":
        compiled = torch.compile(model, fullgraph=True, dynamic=False, mode="reduce-overhead")
        return lambda token, input_pos: compiled(token, input_pos)
    return _aot_cpu_step(model)


def _aot_cpu_step(model: M2Transformer) -> DecodeStep:
    token = torch.zeros(1, 1, dtype=torch.long)
    input_pos = torch.zeros(1, dtype=torch.long)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # export's notes on inference-mode tensors; not actionable here
        program = torch.export.export(model, (token, input_pos))
        with tempfile.TemporaryDirectory(prefix="mmx-decode-") as tmp:
            package = torch._inductor.aoti_compile_and_package(
                program,
                package_path=str(Path(tmp) / "decode.pt2"),
                inductor_configs=_inductor_configs(),
            )
            runner = torch._inductor.aoti_load_package(package)  # loads the library; the file can go
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    names = runner.get_constant_fqns()
    missing = [name for name in names if name not in tensors]
    if missing:  # a model change the exporter saw differently: fail loudly, never run on garbage
        raise RuntimeError(f"compiled decode step wants tensors the model lacks: {missing[:5]}")
    runner.load_constants({name: tensors[name] for name in names}, check_full_update=True, user_managed=True)

    def step(token: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        return runner(token, input_pos)

    return step


def _inductor_configs() -> dict:
    configs = {"aot_inductor.package_constants_in_so": False}
    if cpu_kernels.enabled() and cpu_kernels.available():
        configs["aot_inductor.custom_ops_to_c_shims"] = cpu_kernels.c_shims()
    return configs
