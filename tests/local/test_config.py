"""config.json in both dialects, and what is refused."""

from __future__ import annotations

import pytest

from agent.backends.local.config import ConfigError, ModelArgs

# MiniMax-M2's published config.json (the fields that matter), original dialect.
M2_ORIGINAL = {
    "architectures": ["MiniMaxM2ForCausalLM"],
    "model_type": "minimax_m2",
    "attn_type_list": [1] * 62,
    "bos_token_id": 200034,
    "eos_token_id": 200020,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 3072,
    "intermediate_size": 1536,
    "max_position_embeddings": 196608,
    "num_attention_heads": 48,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 62,
    "num_key_value_heads": 8,
    "num_local_experts": 256,
    "num_mtp_modules": 3,
    "mtp_transformer_layers": 1,
    "qk_norm_type": "per_layer",
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "float8_e4m3fn",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
        "modules_to_not_convert": ["gate", "e_score_correction_bias", "lm_head"],
    },
    "rms_norm_eps": 1e-06,
    "rope_theta": 5000000,
    "rotary_dim": 64,
    "scoring_func": "sigmoid",
    "shared_intermediate_size": 0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_mtp": True,
    "use_qk_norm": True,
    "use_routing_bias": True,
    "vocab_size": 200064,
}


def transformers_dialect(d: dict) -> dict:
    t = {
        k: v
        for k, v in d.items()
        if k
        not in (
            "rotary_dim",
            "rope_theta",
            "scoring_func",
            "use_routing_bias",
            "use_qk_norm",
            "qk_norm_type",
            "attn_type_list",
            "use_mtp",
            "num_mtp_modules",
            "mtp_transformer_layers",
        )
    }
    t["rope_parameters"] = {"rope_type": "default", "rope_theta": 5e6, "partial_rotary_factor": 0.5}
    return t


def test_both_dialects_describe_the_same_network():
    a = ModelArgs.from_config_dict(M2_ORIGINAL)
    b = ModelArgs.from_config_dict(transformers_dialect(M2_ORIGINAL))
    assert a.rotary_dim == b.rotary_dim == 64
    assert a.rope_theta == b.rope_theta == 5e6
    assert (a.q_dim, a.kv_dim, a.num_experts, a.top_k) == (6144, 1024, 256, 8)
    assert a.quant is not None and (a.quant.block_out, a.quant.block_in) == (128, 128)
    assert a.num_mtp_modules == 3 and b.num_mtp_modules == 0
    same = {k: v for k, v in a.describe().items() if k != "num_mtp_modules"}
    assert same == {k: v for k, v in b.describe().items() if k != "num_mtp_modules"}


def test_writer_round_trips_both_dialects():
    a = ModelArgs.from_config_dict(M2_ORIGINAL)
    for dialect in ("original", "transformers"):
        assert ModelArgs.from_config_dict(a.to_config_dict(dialect)).describe() | {"num_mtp_modules": 3} == (
            a.describe()
        )


def test_parameter_counts_of_the_real_model():
    total, active = ModelArgs.from_config_dict(M2_ORIGINAL).param_counts()
    assert 228e9 < total < 231e9  # "about 229B total"
    assert 9.5e9 < active < 11.5e9  # "about 10B active"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scoring_func": "softmax"}, "sigmoid"),
        ({"qk_norm_type": "per_head"}, "per_layer"),
        ({"attn_type_list": [0, 1] * 31}, "M1"),
        ({"shared_intermediate_size": 1024}, "shared expert"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "rope_type"),
        ({"rope_parameters": {"partial_rotary_factor": 1.0}}, "disagrees"),
        ({"model_type": "llama"}, "model_type"),
        ({"quantization_config": {"quant_method": "awq"}}, "awq"),
    ],
)
def test_refuses_what_is_not_m2(change, message):
    with pytest.raises(ConfigError, match=message):
        ModelArgs.from_config_dict({**M2_ORIGINAL, **change})


def test_missing_field_is_named():
    bad = dict(M2_ORIGINAL)
    del bad["num_local_experts"]
    with pytest.raises(ConfigError, match="num_local_experts"):
        ModelArgs.from_config_dict(bad)
