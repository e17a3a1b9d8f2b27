"""The batching engine on a real (tiny, random) model: each request's tokens equal `Generator.generate` on
the same prompt alone, whatever else runs beside it; prefix reuse, cancel, the queue bound, the context
guard, and a failing request that leaves the others serving."""

from __future__ import annotations

import pytest
import torch

from agent.backends.local.batching import BatchingEngine, EngineRequest, QueueFull, common_prefix
from agent.backends.local.generate import PREFILL_CHUNK, ContextLengthError, Generator, SamplingParams
from agent.backends.local.loader import load_model

GREEDY = SamplingParams(greedy=True)
CONTEXT = 256


@pytest.fixture(scope="module")
def reference(random_checkpoint):
    """Generates one request alone on a fresh cache (the engine's models are loaded separately)."""
    model = load_model(random_checkpoint, dtype="float32")

    def alone(prompt, n, params=GREEDY, stop_ids=(), context=CONTEXT):
        gen = Generator(model, max_seq_len=context)  # a new owner: no prefix reuse
        return list(gen.generate(prompt, n, params, stop_ids))

    return alone


@pytest.fixture(scope="module")
def engine(random_checkpoint):
    with BatchingEngine(load_model(random_checkpoint, dtype="float32"), max_seq_len=CONTEXT) as eng:
        yield eng


@pytest.fixture(scope="module")
def single_slot(random_checkpoint):
    """One slot, room for one waiting request, and a long context: a request runs for thousands of steps."""
    model = load_model(random_checkpoint, dtype="float32")
    with BatchingEngine(model, max_seq_len=4096, max_concurrency=1, max_queue=1) as eng:
        yield eng


def prompts(first: int, count: int = 8) -> list[list[int]]:
    """`count` prompts of different lengths; `first` keeps each test's prompts apart (no shared prefix
    with another test's, so the engine's slot memory does not make them reuse anything)."""
    return [[first + i] + list(range(100 + 11 * i, 100 + 11 * i + 2 + 5 * i)) for i in range(count)]


def test_one_request_equals_generate(engine, reference):
    prompt = prompts(1, 1)[0]
    stream = engine.submit(EngineRequest(prompt, 24, GREEDY))
    assert list(stream) == reference(prompt, 24)
    assert stream.stop_reason == "length" and stream.prompt_tokens == len(prompt)
    assert stream.generated_tokens == 24 and stream.reused_tokens == 0


def test_eight_concurrent_requests_joining_mid_flight_equal_generate(engine, reference):
    batch = prompts(10)
    lengths = [30 - 2 * i for i in range(8)]
    early = [engine.submit(EngineRequest(p, n, GREEDY)) for p, n in zip(batch[:4], lengths[:4], strict=True)]
    head = early[0].next_chunk()  # the first four are decoding when the rest join
    late = [engine.submit(EngineRequest(p, n, GREEDY)) for p, n in zip(batch[4:], lengths[4:], strict=True)]
    for i, (stream, prompt, n) in enumerate(zip(early + late, batch, lengths, strict=True)):
        tokens = (head if i == 0 else []) + list(stream)
        assert tokens == reference(prompt, n), prompt
        assert stream.stop_reason == "length"
    stats = engine.stats()
    assert stats["active"] == 0 and stats["queued"] == 0 and stats["errors"] == 0
    assert stats["decode_steps"] < stats["generated_tokens"]  # rows shared decode steps


def test_stop_id_ends_the_request_without_being_handed_over(engine, reference):
    prompt = prompts(20, 1)[0]
    free = reference(prompt, 12)
    stop = free[5]
    stream = engine.submit(EngineRequest(prompt, 12, GREEDY, stop_ids=(stop,)))
    assert list(stream) == free[: free.index(stop)] and stream.stop_reason == "stop"


def test_seeded_sampling_is_the_same_alone_and_batched(engine, reference):
    batch = prompts(30)
    params = [SamplingParams(seed=40 + i, temperature=0.9, top_k=50, top_p=0.9) for i in range(8)]
    streams = [engine.submit(EngineRequest(p, 20, sp)) for p, sp in zip(batch, params, strict=True)]
    for stream, prompt, sp in zip(streams, batch, params, strict=True):
        assert list(stream) == reference(prompt, 20, sp)


def test_next_turn_reuses_the_prefix_and_gives_the_same_tokens(engine, reference):
    prompt = prompts(40, 1)[0] + list(range(300, 330))
    first = list(engine.submit(EngineRequest(prompt, 8, GREEDY)))
    follow_up = prompt + first + [3, 4, 5]
    stream = engine.submit(EngineRequest(follow_up, 8, GREEDY))
    again = list(stream)
    assert stream.reused_tokens == len(prompt) + len(first) - 1  # the last output token was never fed back
    assert again == reference(follow_up, 8)


def test_a_long_prompt_prefills_in_chunks_beside_a_decoding_request(random_checkpoint, reference):
    context = PREFILL_CHUNK + 256
    long_prompt = [(7 * i) % 1000 + 1 for i in range(PREFILL_CHUNK + 60)]
    with BatchingEngine(
        load_model(random_checkpoint, dtype="float32"), max_seq_len=context, max_concurrency=2
    ) as eng:
        short = eng.submit(EngineRequest([2, 3, 4], 40, GREEDY))
        head = short.next_chunk()
        long = eng.submit(EngineRequest(long_prompt, 8, GREEDY))
        assert head + list(short) == reference([2, 3, 4], 40, context=context)
        assert list(long) == reference(long_prompt, 8, context=context)
        assert eng.stats()["prefilled_tokens"] == 3 + len(long_prompt)


def test_bad_requests_get_clear_errors(engine):
    with pytest.raises(ContextLengthError, match=str(CONTEXT)):
        engine.submit(EngineRequest(list(range(CONTEXT)), 4, GREEDY))
    with pytest.raises(ValueError, match="empty prompt"):
        engine.submit(EngineRequest([], 4, GREEDY))
    with pytest.raises(ValueError, match="integers"):
        engine.submit(EngineRequest([1, 10**9], 4, GREEDY))
    with pytest.raises(ValueError, match="max_new_tokens"):
        engine.submit(EngineRequest([1, 2], None, GREEDY))
    with pytest.raises(ValueError, match="stop_ids"):
        engine.submit(EngineRequest([1, 2], 4, GREEDY, stop_ids=("</s>",)))
    assert engine.stats()["queued"] == 0  # nothing bad was queued


def test_common_prefix_across_blocks():
    a = list(range(5000))
    assert common_prefix(a, a, 4999) == 4999
    assert common_prefix(a, a[:3000] + [-1] + a[3001:], 4999) == 3000
    assert common_prefix(a, [], 10) == 0


def test_failing_requests_leave_the_others_serving(engine, reference):
    batch = prompts(50, 5)
    broken = {
        1: SamplingParams(top_p="most"),  # fails when its first token is sampled
        3: SamplingParams(seed=2**70),  # fails as it is admitted (torch refuses the seed)
    }
    streams = [engine.submit(EngineRequest(p, 16, broken.get(i, GREEDY))) for i, p in enumerate(batch)]
    results = [list(stream) for stream in streams]
    assert streams[1].stop_reason == "error" and isinstance(streams[1].error, TypeError)
    assert streams[3].stop_reason == "error" and isinstance(streams[3].error, ValueError)
    for i in (0, 2, 4):
        assert streams[i].stop_reason == "length" and results[i] == reference(batch[i], 16)
    after = engine.submit(EngineRequest(batch[1], 5, GREEDY))
    assert list(after) == reference(batch[1], 5)
    assert engine.stats()["errors"] == 2


def test_queue_bound_and_cancel_free_the_slot(single_slot, reference):
    running = single_slot.submit(EngineRequest([7, 8, 9], 4000, GREEDY))
    assert running.next_chunk()  # it holds the only slot for thousands of steps
    waiting = single_slot.submit(EngineRequest([7, 8, 10], 6, GREEDY))
    with pytest.raises(QueueFull):
        single_slot.submit(EngineRequest([7, 8, 11], 6, GREEDY))
    assert waiting.next_chunk(timeout=0.01) == []  # still queued: nothing yet, not ended
    running.cancel()
    list(running)
    assert running.stop_reason == "cancelled"
    assert list(waiting) == reference([7, 8, 10], 6) and waiting.stop_reason == "length"
    assert single_slot.stats()["cancelled"] == 1


def test_close_ends_what_is_pending(random_checkpoint, reference):
    model = load_model(random_checkpoint, dtype="float32")
    eng = BatchingEngine(model, max_seq_len=4096, max_concurrency=1)
    running = eng.submit(EngineRequest([5, 6], 4000, GREEDY))
    queued = eng.submit(EngineRequest([5, 7], 4000, GREEDY))
    assert running.next_chunk()
    eng.close()
    assert running.stop_reason == queued.stop_reason == "cancelled"
    assert list(queued) == []
    with pytest.raises(RuntimeError, match="closed"):
        eng.submit(EngineRequest([5, 6], 4, GREEDY))
    # Once the engine is gone, a Generator may use the model again (in the cache's first row).
    assert list(Generator(model).generate([5, 6, 8], 6, GREEDY)) == reference([5, 6, 8], 6)


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_bf16_batched_equals_generate(random_checkpoint, dtype):
    """On our CPU kernels a batched row computes the same bits as the sequence alone, so bf16 is exact too."""
    model = load_model(random_checkpoint, dtype=dtype)
    batch = prompts(60)
    expected = []
    for prompt in batch:
        expected.append(list(Generator(model, max_seq_len=CONTEXT).generate(prompt, 16, GREEDY)))
    with BatchingEngine(load_model(random_checkpoint, dtype=dtype), max_seq_len=CONTEXT) as eng:
        streams = [eng.submit(EngineRequest(p, 16, GREEDY)) for p in batch]
        assert [list(s) for s in streams] == expected


@pytest.mark.parametrize("ops", ["cpu-kernels", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_batched_rows_give_the_logits_of_each_sequence_alone(random_checkpoint, ops, dtype):
    """The model's `rows` forward (sequences at different lengths in their own cache rows) against each
    sequence alone: the same bits on our CPU kernels; on plain PyTorch a batched matmul may round
    differently, within fp32's last bits and one bf16 step."""
    batched = load_model(random_checkpoint, dtype=dtype, ops=ops)
    single = load_model(random_checkpoint, dtype=dtype, ops=ops)
    seqs = [list(range(10 + i, 20 + 5 * i)) for i in range(4)]
    alone = []
    with torch.inference_mode():
        batched.setup_caches(128, max_batch=4)
        single.setup_caches(128)
        for row, seq in enumerate(seqs):
            n = len(seq)
            batched(torch.tensor([seq]), torch.arange(n)[None], kv_len=[n], rows=[row])
            single(torch.tensor([seq]), torch.arange(n), kv_len=n)
            alone.append(single(torch.tensor([[7]]), torch.tensor([n]), kv_len=n + 1)[:, -1])
        positions = torch.tensor([[len(seq)] for seq in seqs])
        together = batched(
            torch.full((4, 1), 7), positions, kv_len=[len(s) + 1 for s in seqs], rows=[0, 1, 2, 3]
        )
    alone = torch.cat(alone)
    if ops == "cpu-kernels":
        assert torch.equal(together[:, -1], alone)
    else:
        tol = 1e-5 if dtype == "float32" else 1.6e-2
        torch.testing.assert_close(together[:, -1], alone, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batched_attention_kernel_computes_each_row_as_the_single_row_kernel(dtype):
    from agent.backends.local import cpu_kernels

    assert cpu_kernels.available(), "the CPU kernels must build on the CI machine (g++ and ninja)"
    g = torch.Generator().manual_seed(0)
    k, v = (torch.randn(4, 2, 64, 16, generator=g).to(dtype) for _ in range(2))
    q = torch.randn(3, 8, 1, 16, generator=g).to(dtype)
    rows, positions = torch.tensor([2, 0, 3]), torch.tensor([5, 0, 63])
    together = torch.ops.mmx.decode_attention_rows(q, k, v, rows, positions, 0.25)
    for i, (row, pos) in enumerate(zip(rows.tolist(), positions.tolist(), strict=True)):
        alone = torch.ops.mmx.decode_attention(
            q[i : i + 1], k[row : row + 1], v[row : row + 1], positions[i : i + 1], 0.25
        )
        assert torch.equal(together[i : i + 1], alone), (row, pos)
    with pytest.raises(RuntimeError, match="row 4 is outside"):
        torch.ops.mmx.decode_attention_rows(q, k, v, torch.tensor([2, 0, 4]), positions, 0.25)
    with pytest.raises(RuntimeError, match="position 64 is outside"):
        torch.ops.mmx.decode_attention_rows(q, k, v, rows, torch.tensor([5, 0, 64]), 0.25)
