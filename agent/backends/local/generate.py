"""Prefill then decode with a static KV cache, sampling with temperature / top-k / top-p or greedy.

The decode step (model forward + sampling) reads nothing back to the host; the loop reads each token once
to stream it and to check for the stop marker.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from agent.backends.base import ContextWindowExceeded
from agent.backends.local.compiled import DecodeStep, compile_decode_step
from agent.backends.local.model import M2Transformer


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # M2 defaults: 1.0 / 0.95 / 40
    top_p: float = 0.95
    top_k: int = 40
    greedy: bool = False
    seed: int | None = None


PREFILL_CHUNK = 2048


def _bucket(positions: int, step: int = 256) -> int:
    """Cache length attention reads: the positions in use rounded up, so shapes change rarely."""
    return -(-positions // step) * step


class ContextLengthError(ContextWindowExceeded, ValueError):
    """The prompt does not fit the context window."""


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """logits [B, V] fp32 -> token ids [B] (as a tensor, no host sync)."""
    if params.greedy or params.temperature <= 0:
        return logits.argmax(-1)
    logits = logits / params.temperature
    k = params.top_k if 0 < params.top_k < logits.shape[-1] else logits.shape[-1]
    top, ids = logits.topk(k, dim=-1)  # sorted, descending
    probs = top.softmax(-1)
    if params.top_p < 1.0:
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        before = probs.cumsum(-1) - probs
        probs = probs.masked_fill(before >= params.top_p, 0.0)
    # Exponential race: argmax(p / Exp(1)) draws from p without torch.multinomial's host sync.
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return ids.gather(-1, (probs / noise).argmax(-1, keepdim=True)).squeeze(-1)


class Generator:
    """Runs one sequence at a time on a model; keeps the KV cache between calls so a prompt that extends
    the previous one (the agent loop within a user turn) only prefills its new tokens."""

    def __init__(
        self, model: M2Transformer, *, max_seq_len: int | None = None, compile: bool = False
    ) -> None:
        self.model = model
        # The decode step has static shapes and no host syncs, so it compiles to one graph (opt-in:
        # building it takes tens of seconds, again whenever the cache grows). Prefill (varying length)
        # stays eager.
        self.compile = compile
        self._step: DecodeStep | None = None
        self._step_cache_len = 0  # the cache size the compiled step was built for
        limit = model.args.max_position_embeddings
        self.max_seq_len = min(max_seq_len or limit, limit)
        self._cached: list[int] = []  # token ids whose K/V are in the cache, in order
        self.reused_tokens = 0
        self.stop_reason = "length"

    def _decode_step(self) -> DecodeStep | None:
        """The compiled step for the current cache size; None (decode eagerly) when it cannot be built,
        e.g. no C++ compiler: slower, but the answer still comes."""
        if self._step is None or self._step_cache_len != self.model.max_seq_len:
            try:
                self._step = compile_decode_step(self.model)
            except Exception as exc:  # noqa: BLE001 - any build failure has the same remedy
                self.compile = False
                warnings.warn(f"compiled decode step unavailable, decoding eagerly: {exc}", stacklevel=3)
                return None
            self._step_cache_len = self.model.max_seq_len
        return self._step

    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        params: SamplingParams = SamplingParams(),
        stop_ids: tuple[int, ...] = (),
    ) -> Iterator[int]:
        """Yield generated ids one by one; the stop id (if hit) is not yielded. After the iterator ends,
        `self.stop_reason` says why."""
        n = len(prompt_ids)
        if n == 0:
            raise ValueError("empty prompt")
        if n >= self.max_seq_len:
            raise ContextLengthError(
                f"prompt is {n} tokens; the context window is {self.max_seq_len} (no room to generate)"
            )
        budget = min(max_new_tokens, self.max_seq_len - n)
        model, device = self.model, self.model.device
        # Grow the static cache in steps, so that a conversation does not reallocate on every turn.
        want = min(self.max_seq_len, max(n + budget, 256))
        if want > model.max_seq_len:
            want = min(self.max_seq_len, max(want, 2 * model.max_seq_len))
            model.setup_caches(want)  # keeps the cached prefix
        generator = None
        if not params.greedy:
            generator = torch.Generator(device=device)
            if params.seed is None:
                generator.seed()  # fresh non-deterministic seed, leaving torch's global RNG alone
            else:
                generator.manual_seed(params.seed)

        # Reuse the cached prefix (never the whole prompt: the last token must run to give logits), unless
        # another Generator has written this model's cache since.
        if model.cache_owner is not self:
            self._cached = []
        model.cache_owner = self
        reuse = 0
        limit = min(len(self._cached), n - 1)
        while reuse < limit and self._cached[reuse] == prompt_ids[reuse]:
            reuse += 1
        self.reused_tokens = reuse
        self.stop_reason = "length"

        self._cached = list(prompt_ids[:reuse])  # K/V past this point are being overwritten
        # Prefill in chunks: bounded activation memory (the MoE rows are tokens x top_k) for long prompts.
        for start in range(reuse, n, PREFILL_CHUNK):
            end = min(n, start + PREFILL_CHUNK)
            chunk = torch.tensor([prompt_ids[start:end]], device=device)
            pos = torch.arange(start, end, device=device)
            # Attention reads exactly the positions in use (the eager prefill has no shapes to keep).
            logits = model(chunk, pos, kv_len=end, last_only=True)[:, -1]
        self._cached = list(prompt_ids)
        step = self._decode_step() if self.compile and budget > 1 else None
        input_pos = torch.tensor([n], device=device)
        for i in range(budget):
            token = sample(logits, params, generator)
            tid = int(token.item())
            if tid in stop_ids:
                self.stop_reason = "stop"
                return
            yield tid
            if i + 1 == budget:
                return
            if step is None:  # eager: attend over the used part of the cache only
                logits = model(token.view(1, 1), input_pos, kv_len=_bucket(n + i + 1))[:, -1]
            else:
                logits = step(token.view(1, 1), input_pos)[:, -1]
            self._cached.append(tid)  # its K/V are now in the cache
            input_pos += 1
