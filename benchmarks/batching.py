"""Continuous batching throughput: N concurrent requests through BatchingEngine against the same requests
sent to it one after another, in the same run. Prints total generated tokens per second at each
concurrency and the ratio, then the time to first token of a long prompt with and without a reused prefix.

    .venv/bin/python benchmarks/batching.py [--preset small|tiny] [--dtype bfloat16] [--threads 2]
        [--tokens 128] [--streams 1,4,8]

The checkpoint is `mmx-agent model init --preset ...` (random weights). Every request is greedy with a
prompt of its own (a different first token, so nothing is reused between requests or rounds) and
generates exactly --tokens tokens (no stop id). Both sides run on the same engine, so the ratio is what
concurrency buys, with the same threads doing the work (see in_thread). Each side is warmed up first;
then the sides take turns, once per round, so that load from other processes hits them alike; the best
round of each is reported. "same" says whether the engine's tokens equal `Generator.generate` on each
prompt alone.

Last, the decode forward alone, best of many calls (little affected by other load on the machine): one
sequence through the single-sequence path against N sequences through the batched path, per token. This
is the ceiling of the ratio above; prefill, sampling and the hand-over between threads come on top.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
import time
import warnings

import torch


def make_prompts(vocab: int, count: int, length: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab, (length + 3 * i,), generator=g).tolist() for i in range(count)]


def in_thread(fn):
    """fn() in a thread that ends with it. OpenMP's worker threads belong to the thread that first runs
    parallel torch work; while one thread's workers exist, torch work in another thread ran about 2x
    slower on a 2-core machine. So nothing parallel runs in the main thread, each side's work runs in a
    thread of its own, as in the server (which loads the model in a thread and serves from the engine's)."""
    result = []
    worker = threading.Thread(target=lambda: result.append(fn()))
    worker.start()
    worker.join()
    return result[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=["tiny", "small"])
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--tokens", type=int, default=128, help="new tokens per request (as local_decode.py)")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--streams", default="1,4,8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ttft-prompt", type=int, default=1024, help="prompt length for time to first token")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)

    from agent.backends.local.batching import BatchingEngine, EngineRequest
    from agent.backends.local.checkpoint_writer import init_checkpoint
    from agent.backends.local.generate import Generator, SamplingParams
    from agent.backends.local.loader import load_model

    greedy = SamplingParams(greedy=True)
    streams = [int(s) for s in a.streams.split(",")]
    context = max(a.ttft_prompt + 2 * a.tokens + 16, a.prompt_len + 3 * max(streams) + a.tokens + 1)
    seeds = itertools.count()

    with tempfile.TemporaryDirectory() as tmp:
        args = in_thread(lambda: init_checkpoint(tmp, a.preset, seed=0, context=max(context, 4096)))
        total, active = args.param_counts()
        print(
            f"checkpoint: preset {a.preset}, {args.num_layers} layers, hidden {args.hidden_size}, "
            f"{args.num_experts} experts top-{args.top_k}, {total / 1e6:.1f}M params ({active / 1e6:.1f}M active)"
        )
        engine_model = in_thread(lambda: load_model(tmp, dtype=a.dtype))
        print(
            f"{a.dtype}, ops {engine_model.ops.name}, {a.threads} threads, greedy, prompts of "
            f"{a.prompt_len}+ tokens, {a.tokens} new tokens each, best of {a.rounds} interleaved rounds; "
            f"torch {torch.__version__}"
        )
        engine = in_thread(
            lambda: BatchingEngine(engine_model, max_seq_len=context, max_concurrency=max(streams))
        )
        reference = in_thread(lambda: Generator(load_model(tmp, dtype=a.dtype), max_seq_len=context))

        def alone(prompts):  # Generator on each prompt, for the token check (not timed)
            return in_thread(lambda: [list(reference.generate(p, a.tokens, greedy)) for p in prompts])

        def submit(prompts):
            submitted = [engine.submit(EngineRequest(prompt, a.tokens, greedy)) for prompt in prompts]
            for stream in submitted:  # the reader waits for the ends, not woken for each token
                stream.wait_ended()
            return [list(stream) for stream in submitted]

        def one_at_a_time(prompts):
            return [submit([prompt])[0] for prompt in prompts]

        print(f"{'streams':>7}{'one at a time':>15}{'concurrent':>12}{'ratio':>8}  same tokens (tok/s)")
        for n in streams:
            warm = make_prompts(args.vocab_size, n, a.prompt_len, next(seeds))
            one_at_a_time(warm)
            submit(warm)
            best = {"one": float("inf"), "all": float("inf")}
            same = True
            for _ in range(a.rounds):
                # Fresh prompts for each side, so that neither reuses what the other left in a slot.
                first = make_prompts(args.vocab_size, n, a.prompt_len, next(seeds))
                second = make_prompts(args.vocab_size, n, a.prompt_len, next(seeds))
                start = time.perf_counter()
                one_by_one = one_at_a_time(first)
                best["one"] = min(best["one"], time.perf_counter() - start)
                start = time.perf_counter()
                together = submit(second)
                best["all"] = min(best["all"], time.perf_counter() - start)
                same = same and one_by_one == alone(first) and together == alone(second)
            tokens = n * a.tokens
            theirs, ours = tokens / best["one"], tokens / best["all"]
            print(f"{n:>7}{theirs:>15.1f}{ours:>12.1f}{ours / theirs:>7.2f}x  {same}")

        # Time to first token of a long prompt, then of the next turn, which extends it.
        def first_token(prompt) -> tuple[float, list[int], int]:
            start = time.perf_counter()
            stream = engine.submit(EngineRequest(prompt, a.tokens, greedy))
            stream.next_chunk()
            elapsed = time.perf_counter() - start
            rest = list(stream)
            return elapsed, rest, stream.reused_tokens

        g = torch.Generator().manual_seed(next(seeds))
        long_prompt = torch.randint(4, args.vocab_size, (a.ttft_prompt,), generator=g).tolist()
        cold, output, _ = first_token(long_prompt)
        warm_time, _, reused = first_token(long_prompt + output + [5, 6, 7])
        print(
            f"time to first token, {a.ttft_prompt}-token prompt: {cold * 1e3:.1f} ms fresh; next turn "
            f"(+{len(output) + 3} tokens) {warm_time * 1e3:.1f} ms reusing {reused} cached tokens"
        )
        engine.close()
        decode_forward_table(tmp, a.dtype, streams)


def best_seconds(fn, calls: int = 300) -> float:
    fn()
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.inference_mode()
def decode_forward_table(path: str, dtype: str, streams: list[int]) -> None:
    from agent.backends.local.generate import _bucket
    from agent.backends.local.loader import load_model

    position = 100
    single = load_model(path, dtype=dtype)
    single.setup_caches(512)
    token = torch.tensor([[5]])
    one = best_seconds(lambda: single(token, torch.tensor([position]), kv_len=_bucket(position + 1)))
    batched = load_model(path, dtype=dtype)
    batched.setup_caches(512, max_batch=max(streams))
    print(f"decode forward, best of 300: one sequence {one * 1e6:.0f} us/token")
    for n in streams:
        # Different tokens per row: the rows route to different experts, as real requests do (one token
        # repeated would read one set of experts for the whole batch and overstate the gain).
        tokens = torch.arange(5, 5 + 97 * n, 97).view(n, 1) % single.args.vocab_size
        positions = torch.tensor([[position + i] for i in range(n)])
        kv_len = [_bucket(position + i + 1) for i in range(n)]
        step = best_seconds(lambda: batched(tokens, positions, kv_len=kv_len, rows=list(range(n))))  # noqa: B023
        print(
            f"  {n} sequences batched: {step * 1e6:.0f} us/step, {step / n * 1e6:.0f} us/token, "
            f"{one * n / step:.2f}x"
        )


if __name__ == "__main__":
    main()
