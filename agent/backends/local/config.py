"""Model arguments for the M2 network, read from either config.json dialect.

MiniMax's own files carry `rotary_dim`, `scoring_func`, `use_routing_bias`, `use_qk_norm` and MTP fields;
transformers writes `rope_parameters: {rope_theta, partial_rotary_factor, rope_type}`. Both describe the same
network; anything outside what the M2 architecture is (linear attention layers, shared experts, softmax
routing, per-head QK-norm) is refused with a clear error rather than silently computed wrong.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """config.json describes something this backend cannot compute (or is malformed)."""


@dataclass(frozen=True)
class FP8Quant:
    """Block-wise FP8 (e4m3) weights: W = fp8 * weight_scale_inv[r // bo, c // bi]."""

    block_out: int = 128
    block_in: int = 128
    modules_to_not_convert: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelArgs:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rotary_dim: int
    num_experts: int
    top_k: int
    expert_dim: int  # `intermediate_size`: width of one expert's SwiGLU
    rope_theta: float = 5_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 196_608
    routing_bias: bool = True
    tie_word_embeddings: bool = False
    torch_dtype: str = "bfloat16"
    num_mtp_modules: int = 0
    quant: FP8Quant | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    # ---- parameter counts (what `model info` prints) ----
    def expert_params_per_layer(self) -> int:
        return self.num_experts * 3 * self.hidden_size * self.expert_dim

    def param_counts(self) -> tuple[int, int]:
        """(total, active per token). Embeddings and lm_head count in both."""
        h = self.hidden_size
        attn = h * self.q_dim * 2 + h * self.kv_dim * 2 + self.q_dim + self.kv_dim + 2 * h
        router = self.num_experts * h + (self.num_experts if self.routing_bias else 0)
        experts = self.expert_params_per_layer()
        active_experts = self.top_k * 3 * h * self.expert_dim
        head = self.vocab_size * h * (1 if self.tie_word_embeddings else 2) + h
        total = head + self.num_layers * (attn + router + experts)
        active = head + self.num_layers * (attn + router + active_experts)
        return total, active

    # ---- reading ----
    @classmethod
    def from_dir(cls, model_dir: str | Path) -> ModelArgs:
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise ConfigError(f"{path}: no config.json (is this a Hugging Face checkpoint directory?)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON: {e}") from e
        return cls.from_config_dict(data, source=str(path))

    @classmethod
    def from_config_dict(cls, d: dict[str, Any], *, source: str = "config.json") -> ModelArgs:
        def need(key: str) -> Any:
            if key not in d:
                raise ConfigError(f"{source}: missing required field {key!r}")
            return d[key]

        def refuse(what: str) -> None:
            raise ConfigError(f"{source}: {what}; this backend computes MiniMax-M2 only")

        if d.get("model_type") not in (None, "minimax_m2", "minimax"):
            refuse(f"model_type is {d.get('model_type')!r}")
        hidden = int(need("hidden_size"))
        heads = int(need("num_attention_heads"))
        head_dim = int(d.get("head_dim") or hidden // heads)

        # RoPE: `rotary_dim` (original) <-> `partial_rotary_factor * head_dim` (transformers).
        rope = d.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default":
            refuse(f"rope_type {rope.get('rope_type')!r} (only plain RoPE is M2)")
        if d.get("rope_scaling"):
            refuse("rope_scaling is set")
        rotary_dim = d.get("rotary_dim")
        if "partial_rotary_factor" in rope or "partial_rotary_factor" in d:
            factor = float(rope.get("partial_rotary_factor", d.get("partial_rotary_factor")))
            from_factor = round(factor * head_dim)
            if rotary_dim is not None and int(rotary_dim) != from_factor:
                raise ConfigError(
                    f"{source}: rotary_dim {rotary_dim} disagrees with partial_rotary_factor {factor} "
                    f"* head_dim {head_dim} = {from_factor}"
                )
            rotary_dim = from_factor
        if rotary_dim is None:
            rotary_dim = head_dim
        rotary_dim = int(rotary_dim)
        if rotary_dim % 2 or not 0 < rotary_dim <= head_dim:
            raise ConfigError(
                f"{source}: rotary_dim {rotary_dim} must be even and in (0, head_dim={head_dim}]"
            )
        theta = rope.get("rope_theta", d.get("rope_theta", 5_000_000.0))

        # Fields only the original dialect carries: each must say "M2" when present.
        if d.get("scoring_func", "sigmoid") != "sigmoid":
            refuse(f"scoring_func is {d['scoring_func']!r} (M2 routes with a sigmoid)")
        if d.get("use_qk_norm", True) is not True:
            refuse("use_qk_norm is false")
        if d.get("qk_norm_type", "per_layer") != "per_layer":
            refuse(f"qk_norm_type is {d['qk_norm_type']!r} (M2 normalises the whole q/k, 'per_layer')")
        attn_types = d.get("attn_type_list")
        if attn_types is not None and any(int(t) != 1 for t in attn_types):
            refuse("attn_type_list has non-full-attention layers (that is MiniMax-M1/Text-01)")
        if d.get("sliding_window"):
            refuse("sliding_window is set")
        if int(d.get("shared_intermediate_size") or 0):
            refuse("shared_intermediate_size is non-zero (M2 has no shared expert)")

        quant = None
        qc = d.get("quantization_config")
        if qc:
            if qc.get("quant_method") != "fp8":
                raise ConfigError(
                    f"{source}: quantization {qc.get('quant_method')!r} is not supported (fp8 is)"
                )
            fmt = qc.get("fmt", "float8_e4m3fn")
            if fmt not in ("float8_e4m3fn", "e4m3"):
                raise ConfigError(f"{source}: fp8 format {fmt!r} is not supported (float8_e4m3fn is)")
            bo, bi = (int(x) for x in qc.get("weight_block_size") or (128, 128))
            quant = FP8Quant(bo, bi, tuple(qc.get("modules_to_not_convert") or ()))

        known = set(cls.__dataclass_fields__)
        return cls(
            vocab_size=int(need("vocab_size")),
            hidden_size=hidden,
            num_layers=int(need("num_hidden_layers")),
            num_heads=heads,
            num_kv_heads=int(d.get("num_key_value_heads") or heads),
            head_dim=head_dim,
            rotary_dim=rotary_dim,
            num_experts=int(need("num_local_experts")),
            top_k=int(need("num_experts_per_tok")),
            expert_dim=int(need("intermediate_size")),
            rope_theta=float(theta),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(d.get("max_position_embeddings", 196_608)),
            routing_bias=bool(d.get("use_routing_bias", True)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            torch_dtype=str(d.get("torch_dtype") or d.get("dtype") or "bfloat16"),
            num_mtp_modules=int(d.get("num_mtp_modules") or 0) if d.get("use_mtp", True) else 0,
            quant=quant,
            extra={k: v for k, v in d.items() if k not in known},
        )._validated(source)

    def _validated(self, source: str) -> ModelArgs:
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"{source}: num_attention_heads {self.num_heads} is not a multiple of "
                f"num_key_value_heads {self.num_kv_heads}"
            )
        if not 0 < self.top_k <= self.num_experts:
            raise ConfigError(f"{source}: num_experts_per_tok {self.top_k} not in 1..{self.num_experts}")
        return self

    # ---- writing ----
    def to_config_dict(self, dialect: str = "original") -> dict[str, Any]:
        """config.json content, in MiniMax's original dialect or transformers' native one."""
        common = {
            "architectures": ["MiniMaxM2ForCausalLM"],
            "model_type": "minimax_m2",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.expert_dim,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "num_local_experts": self.num_experts,
            "num_experts_per_tok": self.top_k,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_dropout": 0.0,
            "router_aux_loss_coef": 0.001,
            "router_jitter_noise": 0.0,
            "output_router_logits": False,
            "use_cache": True,
            "initializer_range": 0.02,
        }
        if dialect == "original":
            d = {
                **common,
                "rotary_dim": self.rotary_dim,
                "rope_theta": self.rope_theta,
                "scoring_func": "sigmoid",
                "use_routing_bias": self.routing_bias,
                "use_qk_norm": True,
                "qk_norm_type": "per_layer",
                "attn_type_list": [1] * self.num_layers,
                "use_mtp": self.num_mtp_modules > 0,
                "num_mtp_modules": self.num_mtp_modules,
                "mtp_transformer_layers": 1,
                "shared_intermediate_size": 0,
                "sliding_window": None,
                "torch_dtype": self.torch_dtype,
                # MiniMax's files carry these; readers must ignore them and ask the tokenizer.
                "bos_token_id": None,
                "eos_token_id": None,
            }
        elif dialect == "transformers":
            d = {
                **common,
                "rope_parameters": {
                    "rope_type": "default",
                    "rope_theta": self.rope_theta,
                    "partial_rotary_factor": self.rotary_dim / self.head_dim,
                },
                "dtype": self.torch_dtype,
                "bos_token_id": None,
                "eos_token_id": None,
            }
        else:
            raise ValueError(f"unknown config dialect {dialect!r} (original | transformers)")
        if self.quant is not None:
            d["quantization_config"] = {
                "quant_method": "fp8",
                "fmt": "float8_e4m3fn",
                "activation_scheme": "dynamic",
                "weight_block_size": [self.quant.block_out, self.quant.block_in],
                "modules_to_not_convert": list(self.quant.modules_to_not_convert),
            }
        return d

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


def stored_dtypes(model_dir: str | Path) -> dict[str, int]:
    """Count of stored tensors per safetensors dtype, read from the shard headers only (no torch)."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
    else:
        files = ["model.safetensors"]
    counts: dict[str, int] = {}
    for name in files:
        with open(model_dir / name, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        for key, entry in header.items():
            if key != "__metadata__":
                counts[entry["dtype"]] = counts.get(entry["dtype"], 0) + 1
    return dict(sorted(counts.items()))
