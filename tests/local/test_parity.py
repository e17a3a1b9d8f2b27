"""Our network against transformers' MiniMaxM2ForCausalLM on checkpoints transformers wrote (fp32, and bf16
where the test says so)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open

from agent.backends.local.checkpoint_writer import save_checkpoint
from agent.backends.local.compiled import _step_key
from agent.backends.local.generate import Generator, SamplingParams
from agent.backends.local.loader import load_model
from tests.local.reference import FP8_SHAPES, TINY, dequantize_blocks, hf_model

SEQ = 256
CPU_OPS = ["cpu-kernels", "torch"]  # ops.KINDS that run on the CPU (Triton only interpreted: local_triton)


def ids(n: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


def our_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    model.setup_caches(tokens.shape[1])
    with torch.inference_mode():
        return model(tokens, torch.arange(tokens.shape[1]))


@pytest.mark.parametrize("ops", CPU_OPS)
def test_logits_match_transformers_over_256_tokens(tiny_checkpoint, ops):
    hf, path = tiny_checkpoint
    ours = load_model(path, dtype="float32", ops=ops)
    tokens = ids(SEQ, hf.config.vocab_size)
    with torch.no_grad():
        ref = hf(tokens).logits
    diff = (our_logits(ours, tokens) - ref).abs().max().item()
    assert diff <= 1e-4, diff
    assert ref.abs().max() > 1.0  # the comparison is not between two near-zero tensors


@pytest.mark.parametrize("ops", CPU_OPS)
def test_greedy_generation_matches_transformers_for_128_tokens(tiny_checkpoint, ops):
    hf, path = tiny_checkpoint
    prompt = ids(16, hf.config.vocab_size, seed=1)
    with torch.no_grad():
        ref = hf.generate(prompt, max_new_tokens=128, min_new_tokens=128, do_sample=False)[0, 16:].tolist()
    gen = Generator(load_model(path, dtype="float32", ops=ops))
    ours = list(gen.generate(prompt[0].tolist(), 128, SamplingParams(greedy=True)))
    assert ours == ref
    assert len(set(ours)) > 10  # a real sequence, not one token repeated


@pytest.mark.parametrize("ops", CPU_OPS)
def test_kv_cache_decode_equals_full_forward(tiny_checkpoint, ops):
    _, path = tiny_checkpoint
    model = load_model(path, dtype="float32", ops=ops)
    tokens = ids(48, 512, seed=2)
    full = our_logits(model, tokens)
    model.setup_caches(64)
    steps = [model(tokens[:, :16], torch.arange(16))]  # prefill, then one token at a time
    for t in range(16, 48):
        steps.append(model(tokens[:, t : t + 1], torch.tensor([t])))
    diff = (torch.cat(steps, dim=1) - full).abs().max().item()
    assert diff <= 1e-5, diff


def _fp8_checkpoint(tmp_path):
    """transformers writes the checkpoint; our writer re-stores it with FP8 128x128 block scales."""
    hf = hf_model(seed=5, **FP8_SHAPES)
    hf.save_pretrained(tmp_path / "hf")
    tensors = {}
    for shard in sorted((tmp_path / "hf").glob("*.safetensors")):
        with safe_open(shard, framework="pt") as h:
            tensors |= {k: h.get_tensor(k) for k in h.keys()}  # noqa: SIM118
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    save_checkpoint(tmp_path / "fp8", config, tensors, fp8=True)
    return hf, tmp_path / "fp8"


def test_fp8_checkpoint_dequantizes_exactly_and_matches_transformers(tmp_path):
    hf, path = _fp8_checkpoint(tmp_path)
    ours = load_model(path, dtype="float32", fp8_experts=False)
    index = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]

    def stored(name):
        with safe_open(path / index[name], framework="pt") as h:
            return h.get_tensor(name)

    deq = {}
    for name in index:
        if name.endswith("_scale_inv"):
            w = name.removesuffix("_scale_inv")
            q, s = stored(w), stored(name)
            assert q.dtype == torch.float8_e4m3fn and s.shape == (
                -(-q.shape[0] // 128),
                -(-q.shape[1] // 128),
            )
            deq[w] = dequantize_blocks(q, s)
    assert any(w.shape[0] % 128 or w.shape[1] % 128 for w in deq.values())  # partial blocks present

    # Loaded tensors equal the block-by-block reference, bit for bit.
    layer = ours.layers[1]
    p = "model.layers.1."
    qkv = torch.cat([deq[p + f"self_attn.{x}_proj.weight"] for x in "qkv"])
    assert torch.equal(layer.attn.wqkv, qkv)
    assert torch.equal(layer.attn.wo, deq[p + "self_attn.o_proj.weight"])
    e = p + "block_sparse_moe.experts.3."
    inter = FP8_SHAPES["intermediate_size"]
    assert torch.equal(layer.moe.w13[3, :inter], deq[e + "w1.weight"])
    assert torch.equal(layer.moe.w13[3, inter:], deq[e + "w3.weight"])
    assert torch.equal(layer.moe.w2[3], deq[e + "w2.weight"])

    # And the network computes what transformers computes with those weights.
    ref_state = {}
    for name, w in deq.items():
        name = name.replace("block_sparse_moe.", "mlp.")
        ref_state[name] = w
    sd = hf.state_dict()
    for n in range(FP8_SHAPES["num_hidden_layers"]):
        mlp = f"model.layers.{n}.mlp."
        for proj in ("q", "k", "v", "o"):
            key = f"model.layers.{n}.self_attn.{proj}_proj.weight"
            sd[key] = ref_state[key]
        w1 = [ref_state[f"{mlp}experts.{j}.w1.weight"] for j in range(FP8_SHAPES["num_local_experts"])]
        w3 = [ref_state[f"{mlp}experts.{j}.w3.weight"] for j in range(FP8_SHAPES["num_local_experts"])]
        w2 = [ref_state[f"{mlp}experts.{j}.w2.weight"] for j in range(FP8_SHAPES["num_local_experts"])]
        sd[mlp + "experts.gate_up_proj"] = torch.cat([torch.stack(w1), torch.stack(w3)], dim=1)
        sd[mlp + "experts.down_proj"] = torch.stack(w2)
    hf.load_state_dict(sd)
    tokens = ids(64, FP8_SHAPES["vocab_size"], seed=4)
    with torch.no_grad():
        ref = hf(tokens).logits
    diff = (our_logits(ours, tokens) - ref).abs().max().item()
    assert diff <= 1e-4, diff


def test_bf16_error_is_no_worse_than_transformers_bf16(tiny_checkpoint):
    """bf16 cannot match fp32 bit for bit; its error against fp32 must be that of transformers in bf16."""
    hf, path = tiny_checkpoint
    tokens = ids(64, hf.config.vocab_size, seed=6)
    with torch.no_grad():
        ref = hf(tokens).logits
        hf_bf16 = copy.deepcopy(hf).to(torch.bfloat16)(tokens).logits.float()
    ours = our_logits(load_model(path, dtype="bfloat16"), tokens)
    assert ours.dtype == torch.float32
    ours_err, hf_err = (ours - ref).abs().mean().item(), (hf_bf16 - ref).abs().mean().item()
    assert ours_err <= 1.25 * hf_err, (ours_err, hf_err)


def test_rms_norm_is_the_reference_formula_bit_for_bit():
    from agent.backends.local.model import rms_norm

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        x, w = (3 * torch.randn(5, 96, generator=g)).to(dtype), torch.randn(96, generator=g).to(dtype)
        x32 = x.float()
        ref = w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).to(dtype)
        assert torch.equal(rms_norm(x, w, 1e-6), ref)


def test_fp8_experts_kept_as_stored_compute_what_the_dequantized_model_computes(tmp_path):
    """On the CPU the loader keeps FP8 experts with their block scales by default; prefill (PyTorch ops,
    one expert dequantized at a time), short prefill and decode (our kernels) give the logits of the model
    whose experts were dequantized at load, and the same greedy tokens."""
    _, path = _fp8_checkpoint(tmp_path)
    kept = load_model(path, dtype="float32")
    plain = load_model(path, dtype="float32", fp8_experts=False)
    moe, inter = kept.layers[0].moe, FP8_SHAPES["intermediate_size"]
    assert moe.w13.dtype == moe.w2.dtype == torch.float8_e4m3fn
    hidden = FP8_SHAPES["hidden_size"]
    assert moe.w13_scale.shape == (FP8_SHAPES["num_local_experts"], 2 * inter, -(-hidden // 128))
    assert plain.layers[0].moe.w13.dtype == torch.float32 and plain.layers[0].moe.w13_scale is None

    for length in (64, 20):  # past the kernels' few tokens, and within them
        tokens = ids(length, FP8_SHAPES["vocab_size"], seed=length)
        diff = (our_logits(kept, tokens) - our_logits(plain, tokens)).abs().max().item()
        assert diff <= 1e-4, (length, diff)
    assert _step_key(kept, {}) != _step_key(plain, {})  # compiled steps of the two are not interchangeable
    prompt = ids(12, FP8_SHAPES["vocab_size"], seed=7)[0].tolist()
    greedy = SamplingParams(greedy=True)
    assert list(Generator(kept).generate(prompt, 24, greedy)) == list(
        Generator(plain).generate(prompt, 24, greedy)
    )


def test_fp8_experts_need_an_fp8_checkpoint(tiny_checkpoint):
    _, path = tiny_checkpoint
    with pytest.raises(ValueError, match="not all FP8"):
        load_model(path, fp8_experts=True)


def test_bf16_weights_of_an_fp32_model_stay_bf16_and_change_no_bit(tmp_path):
    """A checkpoint stored in bf16 (as released ones are) loaded as float32 on the CPU keeps its large
    matrices in bf16 by default (half the bytes per token); every path computes exactly what the model with
    fp32 copies computes: long prefill (PyTorch ops, widened one matrix at a time), short prefill and
    decode (our kernels), and the compiled step. transformers in fp32 is the reference."""
    from transformers import MiniMaxM2ForCausalLM

    hf_model(seed=4, **TINY).to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="200KB")
    hf = MiniMaxM2ForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    kept = load_model(tmp_path, dtype="float32")
    wide = load_model(tmp_path, dtype="float32", bf16_weights=False)
    layer = kept.layers[0]
    big = (kept.lm_head, layer.attn.wqkv, layer.attn.wo, layer.moe.w13, layer.moe.w2)
    assert {t.dtype for t in big} == {torch.bfloat16}
    assert {t.dtype for t in (kept.embed, layer.moe.gate, layer.attn.q_norm, kept.norm)} == {torch.float32}
    assert {t.dtype for t in wide.parameters()} == {torch.float32}

    for length in (SEQ, 20):  # past the kernels' few tokens, and within them
        tokens = ids(length, TINY["vocab_size"], seed=length)
        ours = our_logits(kept, tokens)
        assert torch.equal(ours, our_logits(wide, tokens)), length
    with torch.no_grad():
        ref = hf(tokens).logits
    assert (ours - ref).abs().max().item() <= 1e-4

    prompt = ids(12, TINY["vocab_size"], seed=8)[0].tolist()
    greedy = SamplingParams(greedy=True)
    eager = list(Generator(wide).generate(prompt, 40, greedy))
    assert list(Generator(kept, compile=True).generate(prompt, 40, greedy)) == eager
    assert _step_key(kept, {}) != _step_key(wide, {})


def test_bf16_weights_are_for_fp32_models_on_the_cpu(random_checkpoint):
    with pytest.raises(ValueError, match="only for a float32 model on the CPU"):
        load_model(random_checkpoint, dtype="bfloat16", bf16_weights=True)
    model = load_model(random_checkpoint, dtype="float32", bf16_weights=True)
    assert model.lm_head.dtype == torch.bfloat16  # `model init` writes bf16
