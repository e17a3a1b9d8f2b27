"""Sampling, stopping, the context guard and KV-cache reuse across calls."""

from __future__ import annotations

import pytest
import torch

from agent.backends.local.generate import ContextLengthError, Generator, SamplingParams, sample
from agent.backends.local.loader import load_model


@pytest.fixture(scope="module")
def model(random_checkpoint):
    return load_model(random_checkpoint, dtype="float32")


def test_sampler_filters():
    logits = torch.tensor([[0.0, 3.0, 2.9, 1.0, -1.0]])
    assert sample(logits, SamplingParams(greedy=True), None).item() == 1
    g = torch.Generator().manual_seed(0)
    draws = lambda p: {sample(logits, p, g).item() for _ in range(300)}  # noqa: E731
    assert draws(SamplingParams(top_k=1, top_p=1.0)) == {1}
    assert draws(SamplingParams(top_k=2, top_p=1.0)) == {1, 2}
    assert draws(SamplingParams(top_k=0, top_p=0.01)) == {1}  # top-p keeps at least the best token
    assert draws(SamplingParams(top_k=0, top_p=1.0, temperature=5.0)) == {0, 1, 2, 3, 4}


def test_sampler_matches_the_filtered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -3.0]])
    params = SamplingParams(temperature=0.7, top_k=3, top_p=0.9)
    probs = (logits[0, :3] / 0.7).softmax(-1)
    keep = (probs.cumsum(-1) - probs) < 0.9
    expected = torch.zeros(5)
    expected[:3] = torch.where(keep, probs, 0.0)
    expected /= expected.sum()
    g = torch.Generator().manual_seed(1)
    counts = torch.bincount(
        torch.stack([sample(logits, params, g) for _ in range(4000)]).view(-1), minlength=5
    )
    torch.testing.assert_close(counts / 4000, expected, atol=0.03, rtol=0)


def test_seeded_sampling_is_reproducible(model):
    gen = Generator(model)
    a = list(gen.generate([5, 6, 7], 20, SamplingParams(seed=11)))
    b = list(gen.generate([5, 6, 7], 20, SamplingParams(seed=11)))
    c = list(gen.generate([5, 6, 7], 20, SamplingParams(seed=12)))
    assert a == b and a != c


def test_stops_at_the_stop_id_without_yielding_it(model):
    gen = Generator(model)
    free = list(gen.generate([1, 2, 3], 12, SamplingParams(greedy=True)))
    assert gen.stop_reason == "length" and len(free) == 12
    stop = free[5]
    cut = list(gen.generate([1, 2, 3], 12, SamplingParams(greedy=True), stop_ids=(stop,)))
    assert cut == free[: free.index(stop)] and gen.stop_reason == "stop"


def test_context_guard(model):
    gen = Generator(model, max_seq_len=32)
    with pytest.raises(ContextLengthError, match="32"):
        list(gen.generate(list(range(40)), 5))
    out = list(gen.generate(list(range(28)), 50, SamplingParams(greedy=True)))
    assert len(out) == 4 and gen.stop_reason == "length"  # clamped to the window


def test_prefix_reuse_gives_the_same_tokens_as_a_fresh_cache(model, random_checkpoint):
    warm = Generator(model)
    greedy = SamplingParams(greedy=True)
    first = list(warm.generate(list(range(10, 40)), 8, greedy))
    # The next turn extends the previous prompt and output (an agent loop inside one user turn).
    prompt = list(range(10, 40)) + first + [3, 4, 5]
    again = list(warm.generate(prompt, 8, greedy))
    assert warm.reused_tokens == 30 + len(first) - 1  # the last generated token was never fed back
    fresh = Generator(load_model(random_checkpoint, dtype="float32"))
    assert again == list(fresh.generate(prompt, 8, greedy))
    assert fresh.reused_tokens == 0


def test_attention_window_grows_across_buckets(model):
    """Eager decode attends over the used part of the cache (256-position buckets); crossing a bucket
    boundary gives what attending over the whole cache gives."""
    prompt = [(7 * i) % 500 + 3 for i in range(250)]
    gen = Generator(model, max_seq_len=1024)
    out = list(gen.generate(prompt, 12, SamplingParams(greedy=True)))
    with torch.inference_mode():
        model.setup_caches(1024)
        ids = list(prompt)
        logits = model(torch.tensor([ids]), torch.arange(len(ids)), last_only=True)[:, -1]
        ref = []
        for _ in range(12):
            ref.append(int(logits.argmax()))
            logits = model(torch.tensor([[ref[-1]]]), torch.tensor([len(ids)]))[:, -1]
            ids.append(ref[-1])
    assert out == ref


def test_chunked_prefill_equals_one_shot(model, monkeypatch):
    import agent.backends.local.generate as generate

    prompt = [(11 * i) % 400 + 3 for i in range(300)]
    one_shot = list(Generator(model).generate(prompt, 6, SamplingParams(greedy=True)))
    monkeypatch.setattr(generate, "PREFILL_CHUNK", 64)
    assert list(Generator(model).generate(prompt, 6, SamplingParams(greedy=True))) == one_shot
