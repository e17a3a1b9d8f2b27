"""Load a Hugging Face M2 checkpoint (sharded safetensors, memory-mapped) into M2Transformer.

Every tensor name, shape and dtype is checked from the shard headers before any weight is read, and all
problems are reported together by name. FP8 (e4m3) weights with 128x128 `weight_scale_inv` blocks are
dequantized here, one tensor at a time, straight into the stacked layout the model uses.
"""

from __future__ import annotations

import json
import math
import mmap
import re
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open

from agent.backends.local.config import ModelArgs
from agent.backends.local.model import M2Transformer
from agent.backends.local.ops import select_ops

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
# Leftovers some exporters write that carry no weights.
_IGNORED = re.compile(r"(rotary_emb\.inv_freq)$")
HUGE_PAGE = 2 << 20


class CheckpointError(ValueError):
    """The checkpoint's files do not match its config.json (reported by tensor name)."""


def expected_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of the (dequantized) weights an M2 checkpoint must contain."""
    h, e, i = args.hidden_size, args.num_experts, args.expert_dim
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (args.vocab_size, h),
        "model.norm.weight": (h,),
    }
    if not args.tie_word_embeddings:
        shapes["lm_head.weight"] = (args.vocab_size, h)
    for n in range(args.num_layers):
        p = f"model.layers.{n}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (args.q_dim, h),
            p + "self_attn.k_proj.weight": (args.kv_dim, h),
            p + "self_attn.v_proj.weight": (args.kv_dim, h),
            p + "self_attn.o_proj.weight": (h, args.q_dim),
            p + "self_attn.q_norm.weight": (args.q_dim,),
            p + "self_attn.k_norm.weight": (args.kv_dim,),
            p + "block_sparse_moe.gate.weight": (e, h),
        }
        if args.routing_bias:
            shapes[p + "block_sparse_moe.e_score_correction_bias"] = (e,)
        for j in range(e):
            q = f"{p}block_sparse_moe.experts.{j}."
            shapes |= {q + "w1.weight": (i, h), q + "w3.weight": (i, h), q + "w2.weight": (h, i)}
    return shapes


def scale_shape(shape: tuple[int, ...], block: tuple[int, int]) -> tuple[int, int]:
    return math.ceil(shape[0] / block[0]), math.ceil(shape[1] / block[1])


def dequantize_fp8(
    w: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)
) -> torch.Tensor:
    """fp8 [out, in] * scale_inv [ceil(out/bo), ceil(in/bi)] per block -> fp32. Despite its name the
    scale is a multiplier."""
    out, inp = w.shape
    scale = scale_inv.float().repeat_interleave(block[0], 0)[:out].repeat_interleave(block[1], 1)[:, :inp]
    return w.float() * scale


class _Shards:
    """name -> (file, dtype string, shape) from the headers; tensors read lazily through mmap."""

    def __init__(self, model_dir: Path, stack: ExitStack) -> None:
        index = model_dir / "model.safetensors.index.json"
        weight_map: dict[str, str] | None = None
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map") or {}
            files = sorted(set(weight_map.values()))
        elif (model_dir / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            raise CheckpointError(f"{model_dir}: no model.safetensors.index.json or model.safetensors")
        missing = [f for f in files if not (model_dir / f).is_file()]
        if missing:
            raise CheckpointError(f"{model_dir}: shard files listed in the index are missing: {missing}")
        self.handles = {f: stack.enter_context(safe_open(model_dir / f, framework="pt")) for f in files}
        stored = {f: set(h.keys()) for f, h in self.handles.items()}  # noqa: SIM118 (not iterable)
        if weight_map is None:
            weight_map = {name: f for f, names in stored.items() for name in names}
        # The index is the authority on what the checkpoint holds (as for transformers' loader).
        absent = [f"{n} (in {f})" for n, f in weight_map.items() if n not in stored[f]]
        if absent:
            raise CheckpointError(
                f"{model_dir}: the index lists tensors its shards do not hold: {absent[:20]}"
            )
        self.where = weight_map

    def info(self, name: str) -> tuple[str, tuple[int, ...]]:
        sl = self.handles[self.where[name]].get_slice(name)
        return sl.get_dtype(), tuple(sl.get_shape())

    def get(self, name: str) -> torch.Tensor:
        return self.handles[self.where[name]].get_tensor(name)


def _check(shards: _Shards, args: ModelArgs, model_dir: Path) -> dict[str, tuple[int, int]]:
    """Validate names/shapes/dtypes; return {fp8 weight name: block size}. Raises CheckpointError."""
    expected = expected_shapes(args)
    block = (args.quant.block_out, args.quant.block_in) if args.quant else (128, 128)
    missing, unexpected, misshaped, fp8 = [], [], [], {}
    for name, shape in expected.items():
        if name not in shards.where:
            missing.append(name)
            continue
        dtype, got = shards.info(name)
        if got != shape:
            misshaped.append(f"{name}: expected {list(shape)}, found {list(got)}")
        if dtype.startswith("F8"):
            if dtype != "F8_E4M3":
                misshaped.append(f"{name}: FP8 format {dtype} is not supported (F8_E4M3 is)")
            scale = name + "_scale_inv"
            if scale not in shards.where:
                missing.append(scale + " (the FP8 weight has no block scales)")
            elif shards.info(scale)[1] != scale_shape(shape, block):
                misshaped.append(
                    f"{scale}: expected {list(scale_shape(shape, block))} for {block} blocks, "
                    f"found {list(shards.info(scale)[1])}"
                )
            fp8[name] = block
    for name in shards.where:
        if name in expected or _IGNORED.search(name):
            continue
        if name.endswith("_scale_inv") and name.removesuffix("_scale_inv") in fp8:
            continue
        m = _LAYER.match(name)
        if m and int(m.group(1)) >= args.num_layers:
            continue  # MTP modules: declared in config.json, not used for generation
        unexpected.append(name)
    if missing or unexpected or misshaped:
        lines = [
            f"{model_dir}: checkpoint does not match config.json ({args.num_layers} layers, "
            f"{args.num_experts} experts, hidden {args.hidden_size})"
        ]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {x}" for x in items[:20]]
                if len(items) > 20:
                    lines.append(f"    ... and {len(items) - 20} more")
        raise CheckpointError("\n".join(lines))
    return fp8


def empty_expert_stack(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An empty tensor for stacked experts. On the CPU, in memory asking for 2 MB pages: decode reads a few
    randomly chosen experts per token from a pool far larger than the TLB covers with 4 KB pages, and
    the page walks cost ~30% of the MoE's time (measured on the dev box; THP "madvise" mode, the default
    on many distributions, only gives large pages where asked)."""
    if device.type != "cpu" or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(shape, dtype=dtype, device=device)
    count = math.prod(shape)
    size = count * dtype.itemsize
    if size < HUGE_PAGE:
        return torch.empty(shape, dtype=dtype)
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(buffer, dtype=dtype, count=count).view(shape)  # the tensor keeps buffer alive


def load_model(
    model_dir: str | Path,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    fp8_experts: bool | None = None,
    bf16_weights: bool | None = None,
    ops: str | None = None,
) -> M2Transformer:
    """Build M2Transformer from a checkpoint directory. dtype defaults to the config's torch_dtype
    (bfloat16 for FP8 checkpoints); the router always stays fp32.

    ops: how the model computes, one of ops.KINDS ("cpu-kernels", "triton", "torch"); None picks the
    fastest for the device and dtype (ops.select_ops). Its storage plan gives the defaults below.

    fp8_experts: keep FP8 expert weights as stored, with their block scales, and compute with them
    directly (half the memory and half the bytes per token of bf16). None: when every expert weight is
    FP8 in 128-column blocks and the ops run FP8 experts fast (the CPU kernels; otherwise every FP8
    weight is dequantized here).

    bf16_weights: in a float32 model, keep the large matrices (attention projections, experts, lm_head)
    that the checkpoint stores in bf16 in bf16. Widening bf16 to fp32 is exact, so the model computes
    exactly what it would with fp32 copies (our CPU kernels widen as they read; other paths widen one
    matrix at a time), while decode reads half the bytes per token and the weights take half the memory.
    None: when the ops read bf16 weights at full speed (the CPU kernels)."""
    model_dir = Path(model_dir)
    args = ModelArgs.from_dir(model_dir)
    if dtype is None:
        dtype = args.torch_dtype if args.torch_dtype in DTYPES else "bfloat16"
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    device = torch.device(device)

    with ExitStack() as stack:
        shards = _Shards(model_dir, stack)
        fp8 = _check(shards, args, model_dir)
        chosen = select_ops(device, dtype, ops)

        def read(name: str, to: torch.dtype = dtype) -> torch.Tensor:
            t = shards.get(name)
            if name in fp8:
                t = dequantize_fp8(t, shards.get(name + "_scale_inv"), fp8[name])
            return t.to(device=device, dtype=to)

        if bf16_weights is None:
            bf16_weights = chosen.storage.bf16_weights
        elif bf16_weights and (dtype != torch.float32 or device.type != "cpu"):
            raise ValueError("bf16_weights: only for a float32 model on the CPU")

        def stored(*names: str) -> torch.dtype:
            """The dtype to keep these weights in (one matrix in the model)."""
            exact = bf16_weights and all(shards.info(name)[0] == "BF16" for name in names)
            return torch.bfloat16 if exact else dtype

        expert_names = [n for n in expected_shapes(args) if ".block_sparse_moe.experts." in n]
        fp8_blocks = {fp8.get(n, (0, 0))[1] for n in expert_names}
        if fp8_experts is None:
            fp8_experts = fp8_blocks == {128} and chosen.storage.fp8_experts
        elif fp8_experts and fp8_blocks != {128}:
            raise ValueError(
                "fp8_experts: the checkpoint's expert weights are not all FP8 in 128-column blocks"
            )

        def read_fp8(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            """(FP8 weight as stored, fp32 scale per row and 128-column block)."""
            q, scale = shards.get(name), shards.get(name + "_scale_inv").float()
            rows = scale.repeat_interleave(fp8[name][0], 0)[: q.shape[0]]
            return q.to(device), rows.to(device)

        with torch.device("meta"):
            model = M2Transformer(args, chosen, fp8_experts=fp8_experts)
        head = "model.embed_tokens.weight" if args.tie_word_embeddings else "lm_head.weight"
        sd: dict[str, torch.Tensor] = {
            "embed": read("model.embed_tokens.weight"),  # one row per token: nothing to gain
            "norm": read("model.norm.weight"),
            "lm_head": read(head, stored(head)),
        }
        e, i, h = args.num_experts, args.expert_dim, args.hidden_size
        for n in range(args.num_layers):
            p, q = f"model.layers.{n}.", f"layers.{n}."
            attn = p + "self_attn."
            sd[q + "input_norm"] = read(p + "input_layernorm.weight")
            sd[q + "post_attn_norm"] = read(p + "post_attention_layernorm.weight")
            qkv = [attn + f"{x}_proj.weight" for x in "qkv"]
            sd[q + "attn.wqkv"] = torch.cat([read(name, stored(*qkv)) for name in qkv])
            sd[q + "attn.wo"] = read(attn + "o_proj.weight", stored(attn + "o_proj.weight"))
            sd[q + "attn.q_norm"] = read(attn + "q_norm.weight")
            sd[q + "attn.k_norm"] = read(attn + "k_norm.weight")
            sd[q + "moe.gate"] = read(p + "block_sparse_moe.gate.weight", torch.float32)
            if args.routing_bias:
                sd[q + "moe.correction_bias"] = read(
                    p + "block_sparse_moe.e_score_correction_bias", torch.float32
                )
            # Stack the experts one tensor at a time: peak memory is the model plus one expert matrix.
            layer_experts = [
                f"{p}block_sparse_moe.experts.{j}.w{k}.weight" for j in range(e) for k in (1, 2, 3)
            ]
            experts_dtype = torch.float8_e4m3fn if fp8_experts else stored(*layer_experts)
            w13 = empty_expert_stack((e, 2 * i, h), experts_dtype, device)
            w2 = empty_expert_stack((e, h, i), experts_dtype, device)
            if fp8_experts:
                s13 = torch.empty(e, 2 * i, math.ceil(h / 128), device=device)
                s2 = torch.empty(e, h, math.ceil(i / 128), device=device)
                for j in range(e):
                    x = f"{p}block_sparse_moe.experts.{j}."
                    for rows, name in ((slice(0, i), "w1"), (slice(i, 2 * i), "w3")):  # gate, then up
                        w13[j, rows], s13[j, rows] = read_fp8(f"{x}{name}.weight")
                    w2[j], s2[j] = read_fp8(x + "w2.weight")
                sd[q + "moe.w13_scale"], sd[q + "moe.w2_scale"] = s13, s2
            else:
                for j in range(e):
                    x = f"{p}block_sparse_moe.experts.{j}."
                    w13[j, :i] = read(x + "w1.weight", experts_dtype)  # gate
                    w13[j, i:] = read(x + "w3.weight", experts_dtype)  # up
                    w2[j] = read(x + "w2.weight", experts_dtype)
            sd[q + "moe.w13"], sd[q + "moe.w2"] = w13, w2
        model.load_state_dict(sd, strict=True, assign=True)
    return model.eval().requires_grad_(False)
