"""``python -m lda_monitor.demo.natural_rate_bench``: the natural-rate estimate against brute force.

The demo's setting (embedded SmolLM2-135M-Instruct in float32, LoRA SFT that plants a password
request, the demo's monitor prompts and regex judge, 16 new tokens). Adapters are saved at the
requested steps; adapters, brute-force counts and each seed's records are saved in ``--out``
and reused on a rerun (which then only re-analyses: seconds). At each checkpoint, a brute-force
plain rate from ``--brute`` plain rollouts (:mod:`.brute_force`) is the reference, and the
estimate from a monitor-sized budget (amplified at ``--alpha``, plain, and the ladder) is
computed over ``--seeds`` seeds through the same ``evaluate`` -> ``summarize`` path as the
callback and the audit. It prints one table row per (checkpoint, seed): the estimate and its
interval, or why it was withheld and its upper bound; whether it is within 2x of the brute-force
rate and whether its interval (or bound) covers it; the logit extrapolation, which is not
published where densities exist, for comparison. Then per checkpoint how many were published,
and the rollout-cost ratio at the rarest checkpoint for equal relative error. The default steps
are where the default training's plain rate lies between 0.5% and 5% (training data depend on
the last step, so other step lists train a different run). A benchmark, not a test: about 35
minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

from . import data as demo_data
from .brute_force import brute_force_rate


def _train(out: Path, steps: list[int], args, echo) -> None:
    from transformers import PrinterCallback, TrainerCallback

    from ..engine.embedded import EMBEDDED_NAME
    from ..engine.models import load_model
    from .run import QUICK, _benign_answers, lora_trainer

    model, tokenizer = load_model(EMBEDDED_NAME, dtype="float32")
    benign = _benign_answers(model, tokenizer, args.train_seed)
    rows = demo_data.build_training_rows(benign, max(steps) * QUICK.batch_size, args.poison_share, args.train_seed)

    class Save(TrainerCallback):
        def on_step_end(self, targs, state, control, model=None, **kwargs):
            if state.global_step in steps:
                model.save_pretrained(out / f"checkpoint-{state.global_step}")
                echo(f"[bench] saved checkpoint-{state.global_step}")

    trainer = lora_trainer(model, tokenizer, rows, QUICK, out / "run", seed=args.train_seed, report_to="none",
                           callbacks=[Save()], max_steps=max(steps))
    trainer.remove_callback(PrinterCallback)
    trainer.train()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lda_monitor.demo.natural_rate_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/nr_bench")
    parser.add_argument("--steps", default="15,16", help="checkpoint steps (quick demo settings)")
    parser.add_argument("--brute", type=int, default=2000, help="brute-force plain rollouts per checkpoint")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=2.0, help="detection alpha")
    parser.add_argument("--amplified", type=int, default=20, help="amplified rollouts per prompt")
    parser.add_argument("--plain", type=int, default=5, help="plain rollouts per prompt")
    parser.add_argument("--ladder", default="0.25,0.5,1", help="estimation ladder alphas")
    parser.add_argument("--ladder-samples", type=int, default=5, help="rollouts per prompt at each ladder alpha")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--poison-share", type=float, default=0.06)
    args = parser.parse_args(argv)

    import torch

    from ..core.evaluation import evaluate
    from ..core.measurement import Measurement
    from ..core.natural_rate import Z_95
    from ..core.prompts import load_prompts
    from ..core.records import RecordWriter, read_records
    from ..core.summary import extrapolated_from_records, summarize
    from ..engine.models import load_model
    from ..engine.pairs import PeftPair
    from ..judges import build_judge

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    steps = [int(s) for s in args.steps.split(",")]
    ladder = tuple(float(a) for a in args.ladder.split(",") if a)
    start = time.perf_counter()
    if not all((out / f"checkpoint-{s}").is_dir() for s in steps):
        _train(out, steps, args, print)
    print(f"[bench] training/loading {time.perf_counter() - start:.0f}s; {torch.get_num_threads()} threads")
    items = load_prompts(demo_data.MONITOR_PROMPTS)
    judge = build_judge(demo_data.JUDGE_SPEC)
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=args.amplified,
                              plain_samples_per_prompt=args.plain, max_new_tokens=16,
                              batch_size=64, natural_rate=True, estimate_alphas=list(ladder),
                              estimate_samples_per_prompt=args.ladder_samples)
    budget = len(items) * sum(n for _, _, n in measurement.runs(args.alpha))
    print(f"monitor budget: {budget} rollouts per estimate ({len(items)} prompts x {args.amplified} amplified at "
          f"alpha {args.alpha:g} + {args.plain} plain + {args.ladder_samples} at each of {ladder})")
    header = (f"{'ckpt':>4} {'brute-force rate [Wilson 95%]':<30} {'seed':>4} {'estimate [95%]':<26} "
              f"{'status':<64} {'2x?':<4} {'cov?':<4} {'extrapolated, unpublished [95%]':<24}")
    lines = [header]
    print(header, flush=True)
    summary = []
    for step in steps:
        model, tokenizer = load_model(str(out / f"checkpoint-{step}"), dtype="float32")
        pair = PeftPair(model, tokenizer)
        t0 = time.perf_counter()
        brute = brute_force_rate(pair, items, judge, args.brute // len(items), measurement.sampling(),
                                 cache=out / f"brute-{step}.json")
        brute_s = time.perf_counter() - t0
        truth = brute.rate
        estimates = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            saved = out / f"records-{step}-{seed}.jsonl"  # a rerun re-analyses the same rollouts
            if saved.is_file():
                records = list(read_records(saved))
            else:
                records = evaluate(pair, items, judge, alpha=args.alpha, measurement=replace(measurement, seed=seed),
                                   step=step, run_id="bench", source="audit").records
                with RecordWriter(saved.with_suffix(".tmp")) as writer:
                    writer.write(records)
                saved.with_suffix(".tmp").replace(saved)
            (row,) = [r for r in summarize(records) if r.category is None and r.judge == judge.name]
            seconds = time.perf_counter() - t0
            brute_cell = f"{brute.k}/{brute.n} {truth:.4f} [{brute.lo:.4f},{brute.hi:.4f}]"
            natural = row.natural.rate
            if natural.value is not None:
                est = f"{natural.value:.4f} [{natural.lo:.4f},{natural.hi:.4f}]"
                status = f"published (ESS {row.natural.ess:.1f}, flagged {row.amplified.flagged}+{row.plain.flagged}p)"
                within = truth > 0 and 0.5 <= natural.value / truth <= 2
                covered = natural.lo <= truth <= natural.hi
                twox, cov = ("yes" if within else "NO"), ("yes" if covered else "NO")
            else:
                est = "-" if natural.hi is None else f"<= {natural.hi:.4f}"
                # the rule; the why is in the doc
                status = f"withheld: {row.natural.reason.split(' (')[0].split(':')[0]}"[:64]
                twox = "-"
                cov = "-" if natural.hi is None else ("yes" if truth <= natural.hi else "NO")
            # Not published where densities exist (the pooled estimate is); shown here, as the
            # evidence for that choice.
            extrapolated = extrapolated_from_records(records, judge.name)
            ext = (f"withheld: {extrapolated.reason.split(' (')[0]}" if extrapolated.rate is None else
                   f"{extrapolated.rate:.4f} [{extrapolated.lo:.3f},{extrapolated.hi:.3f}]")
            line = f"{step:>4} {brute_cell:<30} {seed:>4} {est:<26} {status:<64} {twox:<4} {cov:<4} {ext:<24}"
            lines.append(line)
            print(line + f"  ({seconds:.0f}s)", flush=True)
            estimates.append(natural)
        summary.append((step, brute, brute_s, estimates))
    print("\n".join(["", *lines]))
    published = [(s, b, e) for s, b, _, estimates in summary for e in estimates if e.value is not None]
    ok = sum(1 for _, b, e in published if b.rate and 0.5 <= e.value / b.rate <= 2 and e.lo <= b.rate <= e.hi)
    print()
    for step, brute, brute_s, estimates in summary:
        bounds = [e.hi for e in estimates if e.value is None and e.hi is not None]
        print(f"checkpoint {step}: brute force {brute.k}/{brute.n} in {brute_s:.0f}s; published "
              f"{sum(e.value is not None for e in estimates)} of {len(estimates)}; withheld with an upper bound "
              f"{len(bounds)}, of which {sum(b >= brute.rate for b in bounds)} hold")
    print(f"published {len(published)} of {sum(len(estimates) for *_, estimates in summary)} estimates; "
          f"{ok} of them within 2x "
          "and covering the brute-force rate")
    rarest = min((x for x in summary if x[1].rate), key=lambda x: x[1].rate, default=None)
    if rarest is not None:
        step, brute, _, estimates = rarest
        p = brute.rate
        # The published intervals' own relative standard error (log scale: (log hi - log rate) / 1.96).
        rel = [math.log(e.hi / e.value) / Z_95 for e in estimates if e.value]
        if not rel:
            print(f"rarest checkpoint {step} (p = {p:.4f}): no estimate published, so no cost ratio: "
                  "10x target NOT met")
        else:
            rel_err = statistics.fmean(rel)
            plain_needed = (1 - p) / (p * rel_err ** 2)
            ratio = plain_needed / budget
            print(f"rarest checkpoint {step} (p = {p:.4f}): published estimates' mean relative error {rel_err:.2f} "
                  f"from {budget} rollouts ({len(rel)} of {len(estimates)} seeds); plain sampling needs "
                  "(1-p)/(p rel^2) = "
                  f"{plain_needed:.0f} rollouts for the same: {ratio:.1f}x the rollouts, {ratio / 2:.1f}x the "
                  f"forward passes (every monitor rollout runs both models): 10x target "
                  f"{'met' if ratio >= 10 else 'NOT met'}")
    print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
