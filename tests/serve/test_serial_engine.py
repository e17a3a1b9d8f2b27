"""`serve --compile`'s engine: requests one at a time on a Generator, behind the batching engine's
interface. (The compiled step itself is tested in tests/local/test_compiled.py; here the engine runs it
eagerly, which computes the same tokens.)"""

from __future__ import annotations

import pytest

from agent.backends.local.batching import EngineRequest, QueueFull
from agent.backends.local.generate import ContextLengthError, Generator, SamplingParams
from agent.backends.local.loader import load_model
from agent.serve.serial_engine import SerialEngine

GREEDY = SamplingParams(greedy=True)


@pytest.fixture(scope="module")
def engine(random_checkpoint):
    eng = SerialEngine(load_model(random_checkpoint, dtype="float32"), max_seq_len=4096, max_queue=2)
    yield eng
    eng.close()


def test_requests_take_turns_and_each_equals_generate_alone(engine, random_checkpoint):
    alone = Generator(load_model(random_checkpoint, dtype="float32"), max_seq_len=4096)
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    first = engine.submit(EngineRequest(prompts[0], 16, GREEDY))
    second = engine.submit(EngineRequest(prompts[1], 12, GREEDY))  # waits for the first
    assert list(first) == list(alone.generate(prompts[0], 16, GREEDY))
    assert list(second) == list(alone.generate(prompts[1], 12, GREEDY))
    assert first.stop_reason == second.stop_reason == "length"
    # The next turn of the same conversation reuses the cached prefix.
    again = engine.submit(EngineRequest(prompts[1] + [3, 4], 4, GREEDY))
    assert len(list(again)) == 4 and again.reused_tokens == len(prompts[1])
    assert engine.stats()["active"] == 0 and engine.max_concurrency == 1


def test_queue_bound_cancel_and_context_guard(engine):
    with pytest.raises(ContextLengthError):
        engine.submit(EngineRequest(list(range(1, 4097)), 4, GREEDY))
    running = engine.submit(EngineRequest([1, 2, 3], 4000, GREEDY))
    assert running.next_chunk()  # it holds the engine now
    waiting = engine.submit(EngineRequest([4, 5], 4, GREEDY))
    also_waiting = engine.submit(EngineRequest([4, 6], 4, GREEDY))
    with pytest.raises(QueueFull):
        engine.submit(EngineRequest([6, 7], 4, GREEDY))
    running.cancel()
    list(running)
    assert running.stop_reason == "cancelled"
    assert len(list(waiting)) == 4 and waiting.stop_reason == "length"
    assert len(list(also_waiting)) == 4
