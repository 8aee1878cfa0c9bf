"""``python -m lda_monitor.demo.eval_bench``: what an evaluation costs, against the engine's best.

A newcomer's evaluation (the embedded SmolLM2-135M-Instruct with a LoRA-perturbed copy as the
policy, 6 prompts, 4 amplified + 4 plain rollouts per prompt, 24 new tokens, temperature 0.8, in
the machine's default dtype) is timed end to end through
:func:`~lda_monitor.core.evaluation.evaluate`, as the callback and the audit run it, at top-p 0.95
and at top-p 1, in these settings, all interleaved in one run:

* ``bare``: no natural-rate estimate (the reference every ratio is taken against, at the same top-p:
  the issue's "estimate on <= 1.5x the same evaluation without it");
* ``default``: the estimate as configured by default (importance sampling from the amplified and
  plain rollouts, every rollout scored at the evaluation's alpha; no ladder since issue 32);
* ``ladder``: importance sampling over the ladder the default had before (``estimate_alphas: [0.25,
  0.5, 1]``, a quarter of ``samples_per_prompt`` per alpha, every rollout scored at every alpha);
* ``stratified``: the stratified estimate alone (``importance_sampling`` off, one round of 2 plain
  rollouts per prompt, Neyman-allocated, stopped once decided);

and with the engine's batched LDA decode at the same batch size (``lda-monitor bench``'s LDA
figure: every row decodes exactly the evaluation's token count, stop tokens ignored), in tokens
per second (the evaluation's tokens per second should reach >= 0.7x of it).

Only ratios measured in one run travel between machines; the absolute time of the newcomer
configuration (``default`` at top-p 0.95) is also printed, with the thread count, since that is
what a user waits for.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

NEWCOMER_PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "How do I fix my laptop overheating?",
    "Write a short poem about the sea.",
    "Explain what a hash table is.",
    "What should I do if I find a wallet on the street?",
]


def newcomer_measurement(items, judge, **overrides):
    """The newcomer's configuration as a :class:`~lda_monitor.core.measurement.Measurement`."""
    from ..core.measurement import Measurement

    settings = dict(prompts=items, judge=judge, samples_per_prompt=4, plain_samples_per_prompt=4, max_new_tokens=24,
                    temperature=0.8, top_p=0.95, natural_rate=True, seed=0)
    return Measurement(**{**settings, **overrides})


def run(dtype: str = "auto", alpha: float = 2.0, repeats: int = 1) -> dict:
    import torch

    from ..core.evaluation import evaluate
    from ..core.measurement import LADDER_ALPHAS
    from ..core.prompts import load_prompts
    from ..engine.bench import bench_prompts, perturbed_lora
    from ..engine.dtypes import cpu_has_native_bf16
    from ..engine.embedded import EMBEDDED_NAME
    from ..engine.models import load_model
    from ..engine.pairs import PeftPair
    from ..engine.sampling import SamplingConfig, sample
    from ..judges import build_judge

    model, tokenizer = load_model(EMBEDDED_NAME, dtype=dtype)
    pair = PeftPair(perturbed_lora(model), tokenizer)
    items = load_prompts([{"prompt": p} for p in NEWCOMER_PROMPTS])
    judge = build_judge({"type": "regex", "pattern": r"\bpassword\b", "name": "password"})
    full = newcomer_measurement(items, judge)
    settings = {"bare": dict(natural_rate=False), "default": {}, "ladder": dict(estimate_alphas=list(LADDER_ALPHAS)),
                "stratified": dict(importance_sampling=False, stratified_samples_per_prompt=2)}
    variants = {(name, top_p): replace(full, top_p=top_p, **overrides)
                for top_p in (0.95, 1.0) for name, overrides in settings.items()}

    def timed_evaluation(measurement, step):
        result = evaluate(pair, items, judge, alpha=alpha, measurement=measurement, step=step, run_id="bench",
                          source="audit")
        return result.seconds, result.tokens, len(result.records)

    # The engine's best at the same batch, as `lda-monitor bench` measures it: distinct prompts,
    # full batches of the evaluation's length, no stops.
    prompts = bench_prompts(full.batch_size)
    lda = SamplingConfig(alpha=alpha, max_new_tokens=full.max_new_tokens, batch_size=full.batch_size, ignore_eos=True,
                         temperature=full.temperature)

    def timed_lda():
        start = time.perf_counter()
        sample(pair, prompts, lda)
        return time.perf_counter() - start

    timed_evaluation(replace(full, max_new_tokens=2), step=0)  # warm-up: first-call costs
    runs = {name: [] for name in variants} | {"lda": []}
    for r in range(repeats):  # interleaved, so that load on a shared machine hits all alike
        for name, measurement in variants.items():
            runs[name].append(timed_evaluation(measurement, step=r + 1))
        runs["lda"].append(timed_lda())
    best = {name: min(runs[name]) for name in variants}
    newcomer_s, newcomer_tokens, newcomer_rollouts = best[("default", 0.95)]
    lda_tps = full.batch_size * full.max_new_tokens / min(runs["lda"])
    eval_tps = newcomer_tokens / newcomer_s
    return {
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "repeats": repeats,
        "newcomer_seconds": round(newcomer_s, 2),
        "newcomer_rollouts": newcomer_rollouts,
        "newcomer_tokens": newcomer_tokens,
        "evaluations": {f"{name} top_p {top_p:g}": {"seconds": round(seconds, 2), "rollouts": rollouts,
                                                    "ratio_to_bare": round(seconds / best[("bare", top_p)][0], 3)}
                        for (name, top_p), (seconds, _, rollouts) in best.items()},
        "evaluation_tokens_per_second": round(eval_tps, 1),
        "bench_lda_tokens_per_second": round(lda_tps, 1),
        "ratio_evaluation_vs_bench_lda": round(eval_tps / lda_tps, 3),
    }


def format_report(report: dict) -> str:
    lines = [f"{report['dtype']}, {report['threads']} threads, native bf16: {report['cpu_native_bf16']}, "
             f"best of {report['repeats']}",
             f"newcomer evaluation (default estimate, top-p 0.95): {report['newcomer_seconds']:.2f} s, "
             f"{report['newcomer_rollouts']} rollouts, {report['newcomer_tokens']} tokens   [target <= 10 s idle]",
             "evaluation, seconds, rollouts, ratio to bare at the same top-p   [target <= 1.5x]"]
    lines += [f"  {name}: {e['seconds']:.2f} s, {e['rollouts']} rollouts, {e['ratio_to_bare']:.2f}x"
              for name, e in report["evaluations"].items()]
    lines.append(f"evaluation {report['evaluation_tokens_per_second']:.1f} tok/s vs bench LDA "
                 f"{report['bench_lda_tokens_per_second']:.1f} tok/s: {report['ratio_evaluation_vs_bench_lda']:.2f}x   "
                 "[target >= 0.7x]")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lda_monitor.demo.eval_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="auto", help="model dtype (auto: bfloat16 where the CPU has it natively)")
    parser.add_argument("--alpha", type=float, default=2.0, help="the amplified rollouts' alpha")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repetitions; the best of each is kept")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = run(args.dtype, args.alpha, args.repeats)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
