"""`mmx-agent model ...`: make, inspect and run local M2 checkpoints.

torch is imported inside the commands, so `mmx-agent --help` stays fast and works without it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from agent.exit_codes import ExitCode

app = typer.Typer(no_args_is_help=True, help="The local M2 model: make, inspect and run checkpoints.")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(ExitCode.ERROR)


@app.command("init")
def init_command(
    model_dir: Path = typer.Argument(..., help="Directory to write the checkpoint into."),
    preset: str = typer.Option("tiny", "--preset", help="tiny | small"),
    fp8: bool = typer.Option(False, "--fp8", help="Store projections as FP8 with 128x128 block scales."),
    seed: int = typer.Option(0, "--seed", help="Seed for the weights and the tokenizer corpus."),
    force: bool = typer.Option(
        False, "--force", help="Overwrite a directory that already holds a checkpoint."
    ),
    context: int = typer.Option(
        32_768,
        "--context",
        min=256,
        help="Context window (max_position_embeddings); the agent's system prompt and tools take ~9k tokens.",
    ),
) -> None:
    """Write a random M2 checkpoint in the Hugging Face layout (config, shards + index, tokenizer)."""
    _require_torch()
    from agent.backends.local.checkpoint_writer import PRESETS, init_checkpoint

    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if model_dir.exists() and not model_dir.is_dir():
        _fail(f"{model_dir} exists and is not a directory")
    if model_dir.is_dir() and any(model_dir.iterdir()):
        if not _holds_checkpoint(model_dir):
            _fail(f"{model_dir} is not empty and holds no checkpoint: write into a new or empty directory")
        if not force:
            _fail(f"{model_dir} already holds a checkpoint; pass --force to overwrite it")
    args = init_checkpoint(model_dir, preset, fp8=fp8, seed=seed, context=context)
    total, active = args.param_counts()
    typer.echo(
        f"wrote {model_dir} ({preset}{', fp8' if fp8 else ''}): {total:,} parameters, "
        f"{active:,} active, vocab {args.vocab_size}, context {args.max_position_embeddings:,}",
        err=True,
    )


def _holds_checkpoint(directory: Path) -> bool:
    """config.json and safetensors shards, and nothing that marks a directory the user works in."""
    return (
        (directory / "config.json").is_file()
        and any(directory.glob("*.safetensors"))
        and not (directory / ".git").exists()
    )


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        _fail(
            "the local model needs PyTorch: install a build (CPU only: pip install torch==2.13.0), "
            "then pip install 'mmx-agent[local]'"
        )


def _write(text: str) -> None:
    """UTF-8 whatever the locale: generated text is arbitrary Unicode (and scripts parse it)."""
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.flush()


def _parse_ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        _fail(f"--prompt-ids must be comma-separated integers, got {text!r}")
    if not ids:
        _fail("--prompt-ids is empty")
    return ids


@app.command("generate")
def generate_command(
    model_dir: Path = typer.Argument(..., help="Checkpoint directory."),
    prompt: str | None = typer.Option(
        None,
        "--prompt",
        help="Prompt text, tokenized as is: nothing added, M2 markers in it become their tokens.",
    ),
    prompt_ids: str | None = typer.Option(
        None, "--prompt-ids", help="Comma-separated token ids, used as is."
    ),
    chat: bool = typer.Option(
        False, "--chat", help="Render --prompt as one user message with the M2 format."
    ),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    greedy: bool = typer.Option(False, "--greedy", help="Argmax decoding instead of sampling."),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed (reproducible output)."),
    temperature: float | None = typer.Option(None, "--temperature"),
    top_p: float | None = typer.Option(None, "--top-p"),
    top_k: int | None = typer.Option(None, "--top-k"),
    dtype: str | None = typer.Option(None, "--dtype", help="float32 | bfloat16 (default: the checkpoint's)"),
    as_json: bool = typer.Option(False, "--json", help='Print {"ids": [...], "text": "..."}.'),
    compile: bool = typer.Option(
        False,
        "--compile",
        help="Compile the decode step first (AOTInductor on CPU, CUDA graphs on GPU): tens of seconds to build, then several times faster decoding.",
    ),
) -> None:
    """Generate from a checkpoint; stops at the end-of-turn marker [e~[ or after --max-new-tokens."""
    if (prompt is None) == (prompt_ids is None):
        _fail("give exactly one of --prompt or --prompt-ids")
    if dtype is not None and dtype not in ("float32", "bfloat16"):
        _fail(f"--dtype must be float32 or bfloat16, got {dtype!r}")
    _require_torch()
    from dataclasses import replace

    from agent.backends.base import GenerationParams
    from agent.backends.local.backend import LocalModel, sampling_from

    try:
        lm = LocalModel(model_dir, dtype=dtype, compile=compile)
    except (OSError, ValueError) as e:
        _fail(str(e))
    if prompt_ids is not None:
        ids = _parse_ids(prompt_ids)
        bad = [i for i in ids if not 0 <= i < lm.model.args.vocab_size]
        if bad:
            _fail(f"--prompt-ids out of the vocabulary (0..{lm.model.args.vocab_size - 1}): {bad[:10]}")
    else:
        if chat:
            from agent.backends.m2.render import render_prompt

            prompt = render_prompt([{"role": "user", "content": prompt}])
        ids = lm.tokenizer.encode(prompt)
    params = sampling_from(lm.defaults, GenerationParams(temperature, top_p, top_k, seed=seed))
    if greedy:
        params = replace(params, greedy=True)
    out: list[int] = []
    decoder = lm.tokenizer.stream()
    try:
        for tid in lm.generator.generate(ids, max_new_tokens, params, stop_ids=(lm.tokenizer.eos_id,)):
            out.append(tid)
            if not as_json:
                _write(decoder.push(tid))
    except ValueError as e:
        _fail(str(e))
    if as_json:
        _write(json.dumps({"ids": out, "text": lm.tokenizer.decode(out)}, ensure_ascii=False) + "\n")
    else:
        _write(decoder.flush() + "\n")


@app.command("info")
def info_command(
    model_dir: Path = typer.Argument(..., help="Checkpoint directory."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of text."),
) -> None:
    """Architecture, parameter counts (total and active per token), dtype and quantization."""
    _require_torch()
    from agent.backends.local.config import ModelArgs, stored_dtypes

    try:
        args = ModelArgs.from_dir(model_dir)
        dtypes = stored_dtypes(model_dir)
    except (OSError, ValueError) as e:
        _fail(str(e))
    total, active = args.param_counts()
    quant = None
    if args.quant:
        quant = f"fp8 e4m3, {args.quant.block_out}x{args.quant.block_in} block scales"
    info = {
        "architecture": "MiniMaxM2ForCausalLM",
        "layers": args.num_layers,
        "hidden_size": args.hidden_size,
        "attention": f"{args.num_heads} query heads, {args.num_kv_heads} KV heads, head_dim {args.head_dim}, "
        f"rotary_dim {args.rotary_dim}, rope_theta {args.rope_theta:g}",
        "experts": f"{args.num_experts} experts, top-{args.top_k}, width {args.expert_dim}, sigmoid router"
        + (" with correction bias" if args.routing_bias else ""),
        "vocab_size": args.vocab_size,
        "context": args.max_position_embeddings,
        "mtp_modules_ignored": args.num_mtp_modules,
        "parameters_total": total,
        "parameters_active": active,
        "dtype": args.torch_dtype,
        "stored_dtypes": dtypes,
        "quantization": quant,
    }
    if as_json:
        typer.echo(json.dumps(info))
        return
    for key, value in info.items():
        if key.startswith("parameters"):
            value = f"{value:,} ({value / 1e9:.2f}B)" if value >= 1e8 else f"{value:,}"
        typer.echo(f"{key.replace('_', ' ')}: {value}")
