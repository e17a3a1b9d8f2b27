"""The ahead-of-time compiled decode step: same numbers as the eager model, one KV cache shared with the
eager prefill, rebuilt when the cache grows. (Each build takes ~15 s on the 2-core CI box.)"""

from __future__ import annotations

import os

import pytest
import torch

from agent.backends.local import compiled
from agent.backends.local.compiled import compile_decode_step
from agent.backends.local.generate import Generator, SamplingParams
from agent.backends.local.loader import load_model

GREEDY = SamplingParams(greedy=True)


def eager_greedy(model, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding with plain full-cache forwards: the reference the generator must match."""
    with torch.inference_mode():
        model.setup_caches(1024)
        ids = list(prompt)
        logits = model(torch.tensor([ids]), torch.arange(len(ids)), last_only=True)[:, -1]
        out = []
        for _ in range(n):
            out.append(int(logits.argmax()))
            logits = model(torch.tensor([[out[-1]]]), torch.tensor([len(ids)]))[:, -1]
            ids.append(out[-1])
    return out


@pytest.mark.parametrize("ops", ["cpu-kernels", "torch"])
def test_compiled_step_matches_the_eager_step_and_writes_the_cache(random_checkpoint, ops):
    """Traced with the ops' one-token forms (torch: multiply-and-reduce, plain-math attention, indexed
    experts; the CPU kernels: the same kernels), the step computes what the eager model computes."""
    model = load_model(random_checkpoint, dtype="float32", ops=ops)
    model.setup_caches(256)
    prompt = torch.tensor([[5, 9, 200, 31, 7]])
    with torch.inference_mode():
        model(prompt, torch.arange(5))
        step = compile_decode_step(model)
        cache = model.layers[1].attn.kv_cache
        expected = model(torch.tensor([[42]]), torch.tensor([5]))
        expected_k = cache.k[:, :, 5].clone()
        cache.k[:, :, 5] = 0  # the compiled step must write position 5 itself, into the model's own cache
        got = step(torch.tensor([[42]]), torch.tensor([5]))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cache.k[:, :, 5], expected_k, atol=1e-6, rtol=1e-6)


def test_compiled_generation_is_token_for_token_the_eager_one_and_survives_cache_growth(random_checkpoint):
    model = load_model(random_checkpoint, dtype="float32")
    gen = Generator(model, compile=True)
    first = list(gen.generate(list(range(10, 40)), 24, GREEDY))
    assert gen._step_cache_len == 256
    # The next turn extends the conversation past the 256-position cache: the cache grows (keeping its
    # prefix), the step is rebuilt for the new size, and the output is still the eager one.
    prompt = list(range(10, 40)) + first + [(7 * i) % 500 + 3 for i in range(220)]
    second = list(gen.generate(prompt, 16, GREEDY))
    assert gen.reused_tokens == 30 + len(first) - 1 and gen._step_cache_len == model.max_seq_len > 256

    reference = load_model(random_checkpoint, dtype="float32")
    assert first == eager_greedy(reference, list(range(10, 40)), 24)
    assert second == eager_greedy(reference, prompt, 16)


def test_compiled_bf16_step_stays_close_to_eager(random_checkpoint):
    """bf16 sums in a different order when compiled (one fused reduction instead of a BLAS call), so the
    logits agree to bf16 precision rather than bit for bit."""
    model = load_model(random_checkpoint, dtype="bfloat16")
    model.setup_caches(256)
    with torch.inference_mode():
        model(torch.tensor([[5, 9, 200, 31, 7]]), torch.arange(5))
        step = compile_decode_step(model)
        expected = model(torch.tensor([[42]]), torch.tensor([5]), kv_len=256)
        got = step(torch.tensor([[42]]), torch.tensor([5]))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=0.05, rtol=0.05)
    assert got.argmax() == expected.argmax()


def test_compiling_needs_a_cache(random_checkpoint):
    with pytest.raises(RuntimeError, match="caches"):
        compile_decode_step(load_model(random_checkpoint, dtype="float32"))


def test_a_failed_build_falls_back_to_eager_decoding(random_checkpoint, monkeypatch, tmp_path):
    """No C++ compiler, an export the model cannot pass: the answer still comes, eagerly, with a warning."""

    def fail(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing built before
    monkeypatch.setattr(torch.export, "export", fail)
    model = load_model(random_checkpoint, dtype="float32")
    gen = Generator(model, compile=True)
    with pytest.warns(UserWarning, match="decoding eagerly: no C\\+\\+ compiler"):
        out = list(gen.generate(list(range(10, 20)), 6, GREEDY))
    assert gen.compile is False and out == eager_greedy(
        load_model(random_checkpoint, dtype="float32"), list(range(10, 20)), 6
    )


def test_built_steps_are_cached_by_shape_and_a_damaged_file_is_rebuilt(
    random_checkpoint, tmp_path, monkeypatch
):
    """The package cache serves later processes (here: the registry of loaded packages emptied, as in a
    new process); within one process a second step of the same shape is a private build."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(compiled, "_LOADED", set())
    steps = tmp_path / "mmx-agent" / "decode-steps"
    model = load_model(random_checkpoint, dtype="float32")
    model.setup_caches(256)
    token, pos = torch.tensor([[42]]), torch.tensor([3])
    with torch.inference_mode():
        compile_decode_step(model)
        (package,) = steps.iterdir()
        built = package.stat().st_ino  # a build writes a new file (renamed into place)
        expected = model(token, pos)

        step = compile_decode_step(model)  # same process: a build of its own, the cache untouched
        assert list(steps.iterdir()) == [package] and package.stat().st_ino == built
        assert (step(token, pos) - expected).abs().max().item() <= 1e-5

        compiled._LOADED.clear()  # a new process: loaded from the cache, not built again
        step = compile_decode_step(model)
        assert list(steps.iterdir()) == [package] and package.stat().st_ino == built
        assert (step(token, pos) - expected).abs().max().item() <= 1e-5

        compiled._LOADED.clear()
        package.write_bytes(b"not a package")
        step = compile_decode_step(model)
        assert (step(token, pos) - expected).abs().max().item() <= 1e-5
        assert package.stat().st_size > 1000  # rebuilt in place

        model.setup_caches(512)  # another cache size is another library
        compile_decode_step(model)
        assert len(list(steps.iterdir())) == 2


def test_two_models_of_one_shape_each_decode_with_their_own_weights(random_checkpoint, tmp_path):
    """Two same-shape models in one process, steps used in turns: each must see only its own weights and
    cache (a second load of one cached package would share the first one's constants)."""
    from agent.backends.local.checkpoint_writer import init_checkpoint

    init_checkpoint(tmp_path, "tiny", seed=1)
    models = [load_model(random_checkpoint, dtype="float32"), load_model(tmp_path, dtype="float32")]
    with torch.inference_mode():
        steps = []
        for model in models:
            model.setup_caches(256)
            model(torch.tensor([[3, 4, 5]]), torch.arange(3))
            steps.append(compile_decode_step(model))
        for position in (3, 4, 5):
            token = torch.tensor([[position * 7]])
            for model, step in zip(models, steps, strict=True):
                compiled = step(token, torch.tensor([position]))
                eager = model(token, torch.tensor([position]))  # rewrites the same cache slot
                assert (compiled - eager).abs().max().item() <= 1e-5


def test_the_cache_keeps_the_most_recently_used_packages(tmp_path):
    for age, name in enumerate(["e", "d", "c", "b", "a"]):  # "a" is the oldest
        package = tmp_path / f"{name}.pt2"
        package.write_bytes(b"x")
        os.utime(package, (1000 - age, 1000 - age))
    (tmp_path / "notes.txt").write_text("not ours")
    compiled._prune(tmp_path, keep=2)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["d.pt2", "e.pt2", "notes.txt"]
