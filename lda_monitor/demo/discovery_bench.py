"""``python -m lda_monitor.demo.discovery_bench``: the cost of judge-free discovery per evaluation.

Synthetic rollouts (Zipf-distributed words from a 2,000-word vocabulary, 0.75 words per token),
amplified and plain alike, so nothing is planted and the cost is that of looking: n-gram
extraction, the exact tests of every candidate phrase, BH. Prints seconds per evaluation.
"""

from __future__ import annotations

import argparse
import random
import time
from types import SimpleNamespace

from ..core.discovery import discover

VOCAB = 2000


def synthetic(n: int, tokens: int, prompts: int, kind: str, rng: random.Random) -> list:
    vocab = [f"w{i}" for i in range(VOCAB)]
    weights = [1 / (i + 1) for i in range(VOCAB)]
    return [SimpleNamespace(kind=kind, rendered_prompt=f"prompt {i % prompts}", prompt=f"prompt {i % prompts}",
                            prompt_index=i % prompts, sample_index=i // prompts,
                            completion=" ".join(rng.choices(vocab, weights, k=max(1, tokens * 3 // 4))))
            for i in range(n)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=120, help="amplified rollouts (and as many plain)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = random.Random(0)
    for tokens in args.tokens:
        amp = synthetic(args.rollouts, tokens, args.prompts, "amplified", rng)
        plain = synthetic(args.rollouts, tokens, args.prompts, "plain", rng)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            found = discover(amp, plain)
            times.append(time.perf_counter() - start)
        print(f"{args.rollouts}+{args.rollouts} rollouts of {tokens} tokens, {args.prompts} prompts: "
              f"{min(times):.3f} s per evaluation (best of {args.repeats}); {found.candidates} candidate phrases, "
              f"{found.tested} tested, {len(found.phrases)} reported")


if __name__ == "__main__":
    main()
