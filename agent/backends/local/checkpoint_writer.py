"""Write M2 checkpoints in the real Hugging Face layout: config.json, sharded safetensors with an index,
tokenizer.json (byte-level BPE carrying the M2 markers), tokenizer_config.json with the chat template,
generation_config.json. `init_checkpoint` makes a random one offline (`mmx-agent model init`)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import save_file

from agent.backends.local.config import FP8Quant, ModelArgs

# Markers of the M2 vocabulary (m2-format.md); single tokens, never merged by BPE.
SPECIAL_TOKENS = [
    "]~!b[",
    "]~b]",
    "[e~[",
    "]!p~[",
    "]!d~[",
    "<fim_prefix>",
    "<fim_middle>",
    "<fim_suffix>",
    "<fim_pad>",
    "<reponame>",
    "<filename>",
]
# Added but not "special": they are text the model writes and the parser reads.
ADDED_TOKENS = ["<think>", "</think>", "<minimax:tool_call>", "</minimax:tool_call>"]
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Linear weights MiniMax ships as FP8 with 128x128 block scales; everything else stays bf16.
FP8_SUFFIXES = (
    "q_proj.weight",
    "k_proj.weight",
    "v_proj.weight",
    "o_proj.weight",
    "w1.weight",
    "w2.weight",
    "w3.weight",
)

PRESETS = {
    "tiny": dict(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        rotary_dim=8,
        num_experts=8,
        top_k=2,
        expert_dim=32,
        vocab=1024,
    ),
    "small": dict(
        hidden_size=256,
        num_layers=4,
        num_heads=8,
        num_kv_heads=2,
        head_dim=32,
        rotary_dim=16,
        num_experts=32,
        top_k=4,
        expert_dim=128,
        vocab=4096,
    ),
}


# ---------------------------------------------------------------- tokenizer
def training_text(seed: int = 0, sentences: int = 3000) -> str:
    """Our own generated text (English-like prose, code, M2-style turns, some non-ASCII) to train BPE on."""
    rng = random.Random(seed)
    nouns = [
        "agent",
        "model",
        "file",
        "test",
        "function",
        "module",
        "value",
        "token",
        "cache",
        "layer",
        "expert",
        "router",
        "branch",
        "commit",
        "patch",
        "error",
        "result",
        "shell",
        "command",
        "parser",
        "prompt",
        "window",
        "budget",
        "user",
        "tool",
        "answer",
        "reason",
    ]
    verbs = [
        "reads",
        "writes",
        "runs",
        "checks",
        "returns",
        "parses",
        "opens",
        "builds",
        "loads",
        "fixes",
        "sorts",
        "keeps",
        "finds",
        "calls",
    ]
    adjs = [
        "small",
        "large",
        "quick",
        "careful",
        "broken",
        "stable",
        "local",
        "remote",
        "sparse",
        "dense",
        "empty",
        "final",
        "first",
    ]
    intl = [
        "café",
        "naïve",
        "über",
        "façade",
        "日本語のテキスト",
        "中文字符",
        "Ελληνικά",
        "русский текст",
        "emoji 🙂",
        "ß",
        "€ 12",
        "→",
    ]
    syllables = [
        "ka",
        "lo",
        "mi",
        "ne",
        "ra",
        "to",
        "su",
        "vi",
        "pe",
        "da",
        "zo",
        "ri",
        "an",
        "el",
        "or",
        "ex",
        "in",
        "un",
        "ta",
        "be",
        "co",
    ]

    def coined() -> str:  # invented words give BPE something to merge beyond the small word lists
        return "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))

    lines = []
    for _ in range(sentences):
        kind = rng.random()
        if kind < 0.55:
            words = [
                rng.choice(adjs),
                rng.choice(nouns),
                rng.choice(verbs),
                "the",
                coined(),
                rng.choice(nouns),
            ]
            if rng.random() < 0.3:
                words += ["and", rng.choice(verbs), rng.choice(intl)]
            lines.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ","]))
        elif kind < 0.85:
            name = f"{rng.choice(verbs)}_{coined()}"
            arg = rng.choice(nouns)
            lines.append(
                f"def {name}({arg}: int = {rng.randint(0, 999)}) -> str:\n"
                f"    return f\"{{{arg}}}\" + '{rng.choice(adjs)}'  # {rng.choice(intl)}"
            )
        else:
            tool = rng.choice(["bash", "read_file", "edit_file", "search"])
            lines.append(
                f'<invoke name="{tool}">\n<parameter name="path">src/{rng.choice(nouns)}.py'
                f"</parameter>\n</invoke>\nThe {rng.choice(nouns)} {rng.choice(verbs)} it."
            )
    return "\n".join(lines)


def train_tokenizer(vocab_size: int, seed: int = 0):
    """Byte-level BPE, no prefix space, the M2 markers as added tokens; offline and deterministic."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + ADDED_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(seed).split("\n"), trainer=trainer)
    return tok


def _tokenizer_files(tok, out: Path) -> None:
    spec = json.loads(tok.to_str())
    for t in spec["added_tokens"]:  # the thinking and tool-call tags are text, not control tokens
        t["special"] = t["content"] not in ADDED_TOKENS
        t["normalized"] = False
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False, indent=1), encoding="utf-8")
    template = json.loads(resources.files(__package__).joinpath("chat_template.json").read_text("utf-8"))
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": "]~!b[",
        "eos_token": "[e~[",
        "unk_token": "]!d~[",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 40960000,
        "chat_template": template["chat_template"],
    }
    (out / "tokenizer_config.json").write_text(
        json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8"
    )


# ---------------------------------------------------------------- weights
def quantize_fp8(w: torch.Tensor, block: tuple[int, int] = (128, 128)) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] -> (float8_e4m3fn weight, fp32 weight_scale_inv [ceil(out/bo), ceil(in/bi)]) such that
    w ~= fp8 * scale_inv per block. Edge blocks are partial (zero-padded for the max only)."""
    out, inp = w.shape
    bo, bi = block
    nbo, nbi = math.ceil(out / bo), math.ceil(inp / bi)
    padded = torch.nn.functional.pad(w.float(), (0, nbi * bi - inp, 0, nbo * bo - out))
    blocks = padded.view(nbo, bo, nbi, bi)
    scale = (blocks.abs().amax(dim=(1, 3)) / torch.finfo(torch.float8_e4m3fn).max).clamp(min=1e-12)
    q = (blocks / scale[:, None, :, None]).to(torch.float8_e4m3fn).view(nbo * bo, nbi * bi)
    return q[:out, :inp].contiguous(), scale


def save_checkpoint(
    out_dir: str | Path,
    config: dict,
    tensors: dict[str, torch.Tensor],
    *,
    fp8: bool = False,
    block: tuple[int, int] = (128, 128),
    shard_bytes: int = 4 << 20,
) -> None:
    """Write tensors (original M2 names) as sharded safetensors + index, and config.json. With fp8, the
    attention and expert projections are stored as float8_e4m3fn with `weight_scale_inv` blocks."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stored: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if fp8 and name.endswith(FP8_SUFFIXES):
            stored[name], stored[name + "_scale_inv"] = quantize_fp8(t, block)
        else:
            stored[name] = t.contiguous()
    if fp8:
        config = {
            **config,
            "quantization_config": {
                "quant_method": "fp8",
                "fmt": "float8_e4m3fn",
                "activation_scheme": "dynamic",
                "weight_block_size": list(block),
                "modules_to_not_convert": ["gate", "e_score_correction_bias", "lm_head", "embed_tokens"],
            },
        }
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in stored.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    weight_map = {}
    for n, shard in enumerate(shards, 1):
        fname = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / fname), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(shard, fname)
    total = sum(t.numel() * t.element_size() for t in stored.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    (out / "config.json").write_text(json.dumps(config, indent=1))


def random_tensors(args: ModelArgs, seed: int) -> dict[str, torch.Tensor]:
    """Random M2 weights in fp32 under the original names. Norm weights and routing bias are random too,
    so a wrong axis or an ignored bias changes the output."""
    from agent.backends.local.loader import expected_shapes

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in expected_shapes(args).items():
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("e_score_correction_bias"):
            t = 0.05 * torch.randn(shape, generator=g)
        elif name == "model.embed_tokens.weight":
            t = torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(shape[-1])
        out[name] = t
    return out


DEFAULT_CONTEXT = 32_768  # room for the agent's system prompt and tools (~9k tokens) and several rounds


def init_checkpoint(
    out_dir: str | Path,
    preset: str = "tiny",
    *,
    fp8: bool = False,
    seed: int = 0,
    context: int = DEFAULT_CONTEXT,
) -> ModelArgs:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = dict(PRESETS[preset])
    tok = train_tokenizer(p.pop("vocab"), seed=seed)
    args = ModelArgs(
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        max_position_embeddings=context,
        torch_dtype="bfloat16",
        **p,
    )
    if fp8:
        args = replace(args, quant=FP8Quant())
    tensors = {k: v.to(torch.bfloat16) for k, v in random_tensors(args, seed).items()}
    config = replace(args, quant=None).to_config_dict("original")
    save_checkpoint(out, config, tensors, fp8=fp8)
    _tokenizer_files(tok, out)
    gen = {
        "bos_token_id": tok.token_to_id("]~!b["),
        "eos_token_id": tok.token_to_id("[e~["),
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 0.95,
        "top_k": 40,
    }
    (out / "generation_config.json").write_text(json.dumps(gen, indent=1))
    return args
