"""Benchmark: concurrent seeded requests against concurrent unseeded ones, on the embedded model.

    python -m lda_monitor.server.seeded_bench --dtype bfloat16
    python -m lda_monitor.server.seeded_bench --dtype float32

``--clients`` requests (one prompt each, distinct prompts) go to the server's batcher at once,
first without a seed, then each with its own seed; the wall-time ratio seeded / unseeded is
printed, and each seeded reply is compared with the same request sent alone (the seed's promise),
and with its rows decoded in batches of 3 and in one batch with as many other rows at alpha 0
(other batch shapes, other alphas beside it).
In bfloat16 seeded requests decode on a float32 copy of the pair (``--seeded-decoding float32``,
the server's default); ``--seeded-decoding alone`` measures the one-at-a-time alternative. The
pair is the embedded model under a small random LoRA (adapter on vs off), as ``lda-monitor bench``.
A benchmark, not a test: it prints figures to quote with the CPU and thread count it ran on.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

from ..config.server import SERVER_DEFAULTS
from ..engine.sampling_config import SEEDED_DECODING


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="auto", help=(
        "auto (bfloat16 where this CPU has native bf16, the case seeded decoding is about), bfloat16 or float32"))
    parser.add_argument("--clients", type=int, default=16, help="concurrent requests (default: 16)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per reply (default: 32)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus of every request (default: 0.95)")
    parser.add_argument("--seeded-decoding", default=SERVER_DEFAULTS.seeded_decoding, choices=SEEDED_DECODING,
                        help=f"the server's option (default: {SERVER_DEFAULTS.seeded_decoding})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = parser.parse_args(argv)

    import torch

    from ..engine.bench import bench_prompts, perturbed_lora
    from ..engine.dtypes import resolve_dtype
    from ..engine.embedded import EMBEDDED_NAME
    from ..engine.models import load_model
    from ..engine.pairs import PeftPair
    from ..engine.sampling_config import SamplingConfig
    from .batcher import RequestBatcher

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(EMBEDDED_NAME, dtype=resolve_dtype(args.dtype))
    pair = PeftPair(perturbed_lora(model), tokenizer)
    batcher = RequestBatcher(pair, max_rows=64, wait_seconds=0.05, seeded_decoding=args.seeded_decoding)
    batcher.start()
    prompts = [[{"role": "user", "content": p}] for p in bench_prompts(args.clients)]
    base = SamplingConfig(alpha=1.0, top_p=args.top_p, max_new_tokens=args.max_tokens, batch_size=64)

    def run(seeded: bool) -> tuple[float, list[list[int]]]:
        start = time.perf_counter()
        futures = [batcher.submit([p], dataclasses.replace(base, seed=100 + i), seeded=seeded)
                   for i, p in enumerate(prompts)]
        replies = [f.result()[0].token_ids for f in futures]
        return time.perf_counter() - start, replies

    try:
        run(seeded=False)  # warm up both pairs
        run(seeded=True)
        unseeded_s, _ = run(seeded=False)
        seeded_s, seeded = run(seeded=True)
        alone = [batcher.submit([p], dataclasses.replace(base, seed=100 + i)).result()[0].token_ids
                 for i, p in enumerate(prompts)]
        shapes = other_shapes(batcher.seeded_pair, prompts, base)
    finally:
        batcher.stop()
    same = sum(a == b for a, b in zip(seeded, alone, strict=True))
    on = "a float32 copy" if batcher.seeded_pair is not pair else "the pair itself"
    print(f"CPU: {_cpu()}; torch threads: {torch.get_num_threads()}; model dtype: {model.dtype}; "
          f"seeded decoding: {args.seeded_decoding} (on {on})")
    print(f"{args.clients} concurrent clients, {args.max_tokens} tokens, top-p {args.top_p}: "
          f"unseeded {unseeded_s:.1f} s, seeded {seeded_s:.1f} s, ratio seeded/unseeded {seeded_s / unseeded_s:.2f}")
    print(f"seeded replies identical to the same request sent alone: {same}/{args.clients} (concurrent); "
          + "; ".join(f"{sum(a == b for a, b in zip(rows, alone, strict=True))}/{args.clients} ({name})"
                      for name, rows in shapes.items()))
    return 0


def other_shapes(pair, prompts, base) -> dict[str, list[list[int]]]:
    """The seeded rows (seed 100 + i, as the clients') decoded on ``pair`` in other batch shapes."""
    from ..engine.sampling import sample

    n = len(prompts)
    work, streams = [(i, 0) for i in range(n)], [(100 + i, 0, 0) for i in range(n)]
    threes = sample(pair, prompts, dataclasses.replace(base, batch_size=3), work=work, streams=streams)
    mixed = sample(pair, prompts, dataclasses.replace(base, batch_size=2 * n), work=work + work,
                   streams=streams + [(7, i, 1) for i in range(n)], alphas=[base.alpha] * n + [0.0] * n)
    return {"batches of 3": [r.token_ids for r in threes],
            f"one batch with {n} rows at alpha 0": [r.token_ids for r in mixed[:n]]}


if __name__ == "__main__":
    raise SystemExit(main())
