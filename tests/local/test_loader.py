"""Loading: errors by tensor name, MTP layers skipped, dtype control, FP8 block scales."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agent.backends.local.checkpoint_writer import quantize_fp8, random_tensors, save_checkpoint
from agent.backends.local.config import ModelArgs
from agent.backends.local.loader import CheckpointError, dequantize_fp8, load_model
from tests.local.reference import dequantize_blocks

ARGS = ModelArgs(
    vocab_size=96,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    rotary_dim=4,
    num_experts=4,
    top_k=2,
    expert_dim=16,
    max_position_embeddings=256,
    torch_dtype="float32",
)


def write(tmp_path, tensors=None, config=None, **kw):
    tensors = random_tensors(ARGS, seed=0) if tensors is None else tensors
    save_checkpoint(tmp_path, config or ARGS.to_config_dict("original"), tensors, shard_bytes=20_000, **kw)
    return tmp_path


def test_loads_sharded_with_index_and_keeps_router_fp32(tmp_path):
    path = write(tmp_path)
    assert len(json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]) > 0
    assert len(list(path.glob("model-*.safetensors"))) > 3
    model = load_model(path, dtype="bfloat16")
    assert model.layers[0].moe.w13.dtype == torch.bfloat16 and model.layers[0].moe.w13.shape == (4, 32, 32)
    assert model.layers[0].moe.w2.shape == (4, 32, 16)
    assert model.layers[0].moe.gate.dtype == torch.float32
    assert model.layers[0].moe.correction_bias.dtype == torch.float32
    assert load_model(path).dtype == torch.float32  # default: the config's torch_dtype


def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path):
    tensors = random_tensors(ARGS, seed=0)
    del tensors["model.layers.1.block_sparse_moe.experts.2.w3.weight"]
    tensors["model.layers.0.self_attn.extra_proj.weight"] = torch.zeros(2, 2)
    tensors["model.layers.0.self_attn.q_norm.weight"] = torch.ones(8)  # per-head shape, not full width
    with pytest.raises(CheckpointError) as err:
        load_model(write(tmp_path, tensors))
    text = str(err.value)
    assert "missing (1)" in text and "model.layers.1.block_sparse_moe.experts.2.w3.weight" in text
    assert "unexpected (1)" in text and "model.layers.0.self_attn.extra_proj.weight" in text
    assert "model.layers.0.self_attn.q_norm.weight: expected [32], found [8]" in text


def test_mtp_layers_are_ignored(tmp_path):
    tensors = random_tensors(ARGS, seed=0)
    tensors["model.layers.2.self_attn.q_proj.weight"] = torch.zeros(32, 32)  # an MTP module's layer
    tensors["model.layers.2.enorm.weight"] = torch.zeros(32)
    config = ARGS.to_config_dict("original") | {"use_mtp": True, "num_mtp_modules": 1}
    model = load_model(write(tmp_path, tensors, config))
    assert len(model.layers) == 2


def test_missing_directory_and_shard_are_clear(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        load_model(tmp_path / "nope")
    path = write(tmp_path)
    next(path.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_model(path)


@pytest.mark.parametrize("shape", [(256, 256), (192, 256), (256, 192), (300, 130), (5, 7)])
def test_fp8_block_dequantization_is_exact(shape):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(shape[0])) * 0.3
    q, scale = quantize_fp8(w)
    assert q.dtype == torch.float8_e4m3fn
    assert (
        scale.shape == (math.ceil(shape[0] / 128), math.ceil(shape[1] / 128)) and scale.dtype == torch.float32
    )
    deq = dequantize_fp8(q, scale)
    assert torch.equal(deq, dequantize_blocks(q, scale))
    # And the quantization itself is as good as e4m3 allows (3 mantissa bits: <= 1/16 relative per block).
    assert ((deq - w).abs() <= w.abs() * 2**-4 + scale.max() * 2**-9).all()


def test_fp8_checkpoint_loads_and_needs_its_scales(tmp_path):
    fp8_path = write(tmp_path / "a", fp8=True)
    config = json.loads((fp8_path / "config.json").read_text())
    assert config["quantization_config"]["weight_block_size"] == [128, 128]
    plain = load_model(write(tmp_path / "b"), dtype="float32")
    quant = load_model(fp8_path, dtype="float32", fp8_experts=False)  # dequantized at load
    rel = (quant.layers[0].moe.w13 - plain.layers[0].moe.w13).abs().max() / plain.layers[
        0
    ].moe.w13.abs().max()
    assert 0 < rel < 0.07
    index = json.loads((fp8_path / "model.safetensors.index.json").read_text())["weight_map"]
    scale_name = "model.layers.0.self_attn.o_proj.weight_scale_inv"
    # Drop one scale tensor from the index: the weight is FP8 without scales -> named error.
    del index[scale_name]
    (fp8_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    with pytest.raises(CheckpointError, match="o_proj.weight_scale_inv"):
        load_model(fp8_path)
