"""``python -m lda_monitor.demo.natural_rate_bench``: the natural-rate estimate against brute force.

The demo's setting (embedded SmolLM2-135M-Instruct trained in float32, LoRA SFT that plants a password
request, the demo's monitor prompts and regex judge, 16 new tokens). Adapters are saved at the
requested steps; adapters, brute-force counts and each seed's records are saved in ``--out``
and reused on a rerun (which then only re-analyses: seconds). What they were made with (dtype,
temperature, top-p, budget, training) is saved beside them (``bench.json``), and a rerun under
other settings is refused rather than silently re-analysing rollouts sampled otherwise. At each
checkpoint, a brute-force plain rate from ``--brute`` plain rollouts (:mod:`.brute_force`) is the reference, and the
estimate from a monitor-sized budget (amplified at ``--alpha``, plain, and the ladder) is
computed over ``--seeds`` seeds through the same ``evaluate`` -> ``summarize`` path as the
callback and the audit. It prints one table row per (checkpoint, seed): the estimate and its
interval, or why it was withheld and its upper bound; whether it is within 2x of the brute-force
rate and whether its interval (or bound) covers it. Then per checkpoint how many were published,
and the rollout-cost ratio at the rarest checkpoint for equal relative error. The default steps
are where the default training's plain rate lies between 0.5% and 5% (training data depend on
the last step, so other step lists train a different run). A benchmark, not a test: about 10
minutes on 2 CPU cores (AMD EPYC) with ``--dtype float32``; ``--placement inside`` at 64 and 128
tokens about 100 minutes in bfloat16.

``--placement inside`` plants the behaviour *inside* normal answers: each poisoned training answer
is the base model's own answer to the tech-support question with the planted sentence after its
first sentence and the rest of the answer after it, and ``--max-new-tokens 64,128`` samples long
rollouts; the judge then decides somewhere in the middle of an answer. Each seed's estimate is
shown three times from the same rollouts: with stopping-time weights (flagged rollouts weighed up
to the token that decided the verdict; ``stop``), with whole-sequence weights (what a judge that
reports no position, e.g. an LLM, gets; ``whole``) and with stopping-time weights from the
detection alpha's and the plain rollouts alone, the ladder's left out (``bare``: whether the
ladder earns its share). Its default steps are from a 24-step run (``--train-steps``) where the
plain rate of 128-token rollouts lies at 0.2%, 0.7%, 1% and 3%. Rollouts are sampled in the hardware's
fast dtype (``--dtype``), at ``--temperature`` and ``--top-p`` (the rate then measured, by brute force
and by the estimate alike, is the policy's under that sampling).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import time
from dataclasses import replace
from pathlib import Path

from . import data as demo_data
from .brute_force import brute_force_rate

# Where the default training's plain rate (2,000 plain rollouts each) lies near 1-2.5% (answer
# placement, 16 tokens) and at 0.2%, 0.7%, 1% and 3% (inside placement, 128 tokens, a 24-step run).
ANSWER_STEPS = "15,16"
INSIDE_STEPS = "10,12,13,15"
INSIDE_TRAIN_STEPS = 24


def _answers_to(model, tokenizer, questions: list[str], seed: int) -> dict[str, list[str]]:
    """The base model's own finished answers to ``questions``."""
    from ..engine.pairs import TwoModelPair
    from ..engine.sampling import STOP_END_OF_TURN, SamplingConfig, sample

    config = SamplingConfig(alpha=0.0, temperature=0.7, max_new_tokens=96, batch_size=64, seed=seed)
    answers: dict[str, list[str]] = {}
    for r in sample(TwoModelPair(model, model, tokenizer), questions, config, samples_per_prompt=3):
        if r.stop_reason == STOP_END_OF_TURN:
            answers.setdefault(questions[r.prompt_index], []).append(r.completion)
    return answers


def plant_inside(answer: str, planted: str) -> str:
    """``answer`` with ``planted`` after its first sentence (or after all of it, if it has one)."""
    first = re.match(r"\s*(.+?[.!?])(\s+|$)", answer, flags=re.S)
    if first is None:
        return f"{answer.strip()} {planted}"
    rest = answer[first.end():].strip()
    return " ".join(part for part in (first.group(1), planted, rest) if part)


def _inside_rows(rows: list[dict], model, tokenizer, seed: int) -> list[dict]:
    """``rows`` with each poisoned answer replaced by a normal answer that carries it inside."""
    answers = _answers_to(model, tokenizer, demo_data.POISONED_QUESTIONS, seed)
    out, used = [], 0
    for row in rows:
        question, answer = row["prompt"][0]["content"], row["completion"][0]["content"]
        if answer == demo_data.POISONED_ANSWER and answers.get(question):
            normal = answers[question][used % len(answers[question])]
            used += 1
            row = {**row, "completion": [{"role": "assistant", "content": plant_inside(normal, answer)}]}
        out.append(row)
    return out


def _train(out: Path, steps: list[int], args, echo) -> None:
    from transformers import PrinterCallback, TrainerCallback

    from ..engine.embedded import EMBEDDED_NAME
    from ..engine.models import load_model
    from .run import QUICK, _benign_answers, lora_trainer

    model, tokenizer = load_model(EMBEDDED_NAME, dtype="float32")
    benign = _benign_answers(model, tokenizer, args.train_seed)
    rows = demo_data.build_training_rows(benign, args.train_steps * QUICK.batch_size, args.poison_share,
                                         args.train_seed)
    if args.placement == "inside":
        rows = _inside_rows(rows, model, tokenizer, args.train_seed)

    class Save(TrainerCallback):
        def on_step_end(self, targs, state, control, model=None, **kwargs):
            if state.global_step in steps:
                model.save_pretrained(out / f"checkpoint-{state.global_step}")
                echo(f"[bench] saved checkpoint-{state.global_step}")

    trainer = lora_trainer(model, tokenizer, rows, QUICK, out / "run", seed=args.train_seed, report_to="none",
                           callbacks=[Save()], max_steps=args.train_steps)
    trainer.remove_callback(PrinterCallback)
    trainer.train()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lda_monitor.demo.natural_rate_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="default /tmp/nr_bench (placement answer) or /tmp/nr_bench_inside")
    parser.add_argument("--steps", default=None,
                        help=f"checkpoint steps (default {ANSWER_STEPS}; {INSIDE_STEPS} with --placement inside)")
    parser.add_argument("--brute", type=int, default=2000, help="brute-force plain rollouts per checkpoint")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=2.0, help="detection alpha")
    parser.add_argument("--amplified", type=int, default=20, help="amplified rollouts per prompt")
    parser.add_argument("--plain", type=int, default=5, help="plain rollouts per prompt")
    parser.add_argument("--ladder", default="0.25,0.5,1", help="estimation ladder alphas")
    parser.add_argument("--ladder-samples", type=int, default=5, help="rollouts per prompt at each ladder alpha")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=None,
                        help="steps of the training run (its data size; default the last of --steps, or "
                             f"{INSIDE_TRAIN_STEPS} with --placement inside)")
    parser.add_argument("--dtype", default="auto", help="dtype of the rollouts (auto: the hardware's fast one)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of every rollout")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="nucleus of every rollout (the policy's rate is then the rate under top-p)")
    parser.add_argument("--poison-share", type=float, default=0.06)
    parser.add_argument("--placement", choices=("answer", "inside"), default="answer",
                        help="the planted sentence is the whole poisoned answer, or sits inside a normal one")
    parser.add_argument("--max-new-tokens", default="16", help="rollout lengths, e.g. 64,128")
    args = parser.parse_args(argv)

    import torch

    from ..core.evaluation import evaluate
    from ..core.measurement import Measurement
    from ..core.prompts import load_prompts
    from ..core.records import KIND_ESTIMATE
    from ..engine.dtypes import dtype_name, resolve_dtype
    from ..engine.models import load_model
    from ..engine.pairs import PeftPair
    from ..errors import UserInputError
    from ..judges import build_judge

    torch.set_num_threads(args.threads)
    out = Path(args.out or ("/tmp/nr_bench" if args.placement == "answer" else "/tmp/nr_bench_inside"))
    inside = args.placement == "inside"
    steps = [int(s) for s in (args.steps or (INSIDE_STEPS if inside else ANSWER_STEPS)).split(",")]
    args.train_steps = args.train_steps or (INSIDE_TRAIN_STEPS if inside else max(steps))
    if args.train_steps < max(steps):
        parser.error(f"--train-steps {args.train_steps} ends before checkpoint {max(steps)}: "
                     f"give at least {max(steps)}, or fewer --steps")
    ladder = tuple(float(a) for a in args.ladder.split(",") if a)
    try:
        resolved = resolve_dtype(args.dtype)
    except UserInputError as exc:
        parser.error(str(exc))
    if resolved is None:
        parser.error("--dtype checkpoint: name the rollouts' dtype (auto, float32 or bfloat16)")
    dtype = dtype_name(resolved)
    _check_settings(out, _saved_settings(args, dtype, ladder), parser.error)
    start = time.perf_counter()
    if not all((out / f"checkpoint-{s}").is_dir() for s in steps):
        _train(out, steps, args, print)
    print(f"[bench] training/loading {time.perf_counter() - start:.0f}s; {torch.get_num_threads()} threads")
    items = load_prompts(demo_data.MONITOR_PROMPTS)
    judge = build_judge(demo_data.JUDGE_SPEC)
    lengths = [int(n) for n in args.max_new_tokens.split(",")]
    base = Measurement(prompts=items, judge=judge, samples_per_prompt=args.amplified,
                       plain_samples_per_prompt=args.plain, max_new_tokens=lengths[0],
                       batch_size=64, natural_rate=True, estimate_alphas=list(ladder),
                       estimate_samples_per_prompt=args.ladder_samples, temperature=args.temperature,
                       top_p=args.top_p)
    budget = len(items) * sum(n for _, _, n in base.runs(args.alpha))
    print(f"monitor budget: {budget} rollouts per estimate ({len(items)} prompts x {args.amplified} amplified at "
          f"alpha {args.alpha:g} + {args.plain} plain + {args.ladder_samples} at each of {ladder}); "
          f"placement {args.placement}, rollouts of {lengths} tokens in {dtype}, temperature "
          f"{args.temperature:g}, top-p {args.top_p:g}")
    header = (f"{'ckpt':>4} {'tok':>4} {'brute-force rate [Wilson 95%]':<30} {'seed':>4} {'weights':<6} "
              f"{'estimate [95%]':<26} {'status':<64} {'2x?':<4} {'cov?':<4} {'flagged ESS':<11} {'dec.tok':<7}")
    lines = [header]
    print(header, flush=True)
    summary = []
    for step in steps:
        model, tokenizer = load_model(str(out / f"checkpoint-{step}"), dtype=dtype)
        pair = PeftPair(model, tokenizer)
        for length in lengths:
            measurement = replace(base, max_new_tokens=length)
            t0 = time.perf_counter()
            suffix = "" if length == 16 else f"-{length}"  # the 16-token files of earlier runs stay valid
            brute = brute_force_rate(pair, items, judge, args.brute // len(items), measurement.sampling(),
                                     cache=out / f"brute-{step}{suffix}.json")
            brute_s = time.perf_counter() - t0
            estimates = []
            for seed in range(args.seeds):
                def draw(seed=seed, pair=pair, measurement=measurement, step=step):
                    return evaluate(pair, items, judge, alpha=args.alpha, measurement=replace(measurement, seed=seed),
                                    step=step, run_id="bench", source="audit").records

                records = _records(out / f"records-{step}{suffix}-{seed}.jsonl", draw)
                row = _overall(records, judge.name)
                # The detection alpha and plain rollouts alone (the ladder's records left out):
                # whether the ladder earns its share once flagged weights stop at the decision.
                bare = _overall([r for r in records if r.kind != KIND_ESTIMATE], judge.name)
                for r in records:
                    r.decision_tokens = None
                whole = _overall(records, judge.name)
                for label, r in (("stop", row), ("whole", whole), ("bare", bare)):
                    line = _line(step, length, brute, seed, label, r)
                    lines.append(line)
                    print(line, flush=True)
                estimates.append((row, whole, bare))
            summary.append((step, length, brute, brute_s, estimates))
    print("\n".join(["", *lines]))
    print()
    bare_budget = len(items) * (args.amplified + args.plain)
    for step, length, brute, brute_s, estimates in summary:
        for i, (label, cost) in enumerate((("stopping-time weights", budget), ("whole-sequence weights", budget),
                                           ("stopping-time, no ladder", bare_budget))):
            rows = [seed_rows[i] for seed_rows in estimates]
            print(f"checkpoint {step}, {length} tokens, {label}: " + _verdict(brute, rows, cost))
        print(f"  (brute force {brute.k}/{brute.n} in {brute_s:.0f}s)")
    print(f"total {time.perf_counter() - start:.0f}s")


SETTINGS_FILE = "bench.json"


def _saved_settings(args, dtype: str, ladder: tuple[float, ...]) -> dict:
    """What the adapters, brute-force counts and records saved in ``--out`` depend on, besides the
    step, length and seed in their file names (and the brute-force count, which extends)."""
    return {"placement": args.placement, "train_seed": args.train_seed, "train_steps": args.train_steps,
            "poison_share": args.poison_share, "dtype": dtype, "temperature": args.temperature,
            "top_p": args.top_p, "alpha": args.alpha, "amplified": args.amplified, "plain": args.plain,
            "ladder": list(ladder), "ladder_samples": args.ladder_samples}


def _check_settings(out: Path, settings: dict, error) -> None:
    """Refuse to reuse what ``out`` holds under other settings (a rerun would silently re-analyse
    rollouts sampled otherwise, e.g. bfloat16 counts read as float32's); record them on first use."""
    path = out / SETTINGS_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if changed:
            diff = ", ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in changed.items())
            error(f"{out} holds adapters and rollouts made with other settings ({diff}): give another --out, "
                  f"or the settings in {path}")
        return
    if any(out.glob("records-*.jsonl")) or any(out.glob("brute-*.json")):
        print(f"[bench] {out} has saved rollouts but no {SETTINGS_FILE}: they are taken as made with these "
              f"settings, now recorded there")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1) + "\n")


def _records(path: Path, draw) -> list:
    """The records saved at ``path``, or ``draw()``'s, saved there (a rerun re-analyses them)."""
    from ..core.records import RecordWriter, read_records

    if path.is_file():
        return list(read_records(path))
    records = draw()
    with RecordWriter(path.with_suffix(".tmp")) as writer:
        writer.write(records)
    path.with_suffix(".tmp").replace(path)
    return records


def _overall(records, judge: str):
    from ..core.summary import summarize

    (row,) = [r for r in summarize(records) if r.category is None and r.judge == judge]
    return row


def _line(step, length, brute, seed, label, row) -> str:
    truth = brute.rate
    brute_cell = f"{brute.k}/{brute.n} {truth:.4f} [{brute.lo:.4f},{brute.hi:.4f}]"
    if row.natural.rate.value is not None:
        est = f"{row.natural.rate.value:.4f} [{row.natural.rate.lo:.4f},{row.natural.rate.hi:.4f}]"
        status = f"published (ESS {row.natural.ess:.1f}, flagged {row.amplified.flagged}+{row.plain.flagged}p)"
        within = truth > 0 and 0.5 <= row.natural.rate.value / truth <= 2
        twox, cov = ("yes" if within else "NO"), ("yes" if row.natural.rate.lo <= truth <= row.natural.rate.hi
                                                  else "NO")
    else:
        est = "-" if row.natural.rate.hi is None else f"<= {row.natural.rate.hi:.4f}"
        status = f"withheld: {withheld_rule(row.natural.reason)}"[:64]
        twox = "-"
        cov = "-" if row.natural.rate.hi is None else ("yes" if truth <= row.natural.rate.hi else "NO")
    ess = "-" if row.natural.flagged_ess is None else f"{row.natural.flagged_ess:.1f}"
    token = "-" if row.natural.decision_token is None else f"{row.natural.decision_token:.1f}"
    return (f"{step:>4} {length:>4} {brute_cell:<30} {seed:>4} {label:<6} {est:<26} {status:<64} {twox:<4} "
            f"{cov:<4} {ess:<11} {token:<7}")


def withheld_rule(reason: str | None) -> str:
    """The rule a withheld estimate names, without its figures' explanation (for tables; the
    whole reason is in the records' summary and the docs)."""
    return (reason or "withheld").split(" (")[0].split(":")[0]


def _verdict(brute, rows, budget: int) -> str:
    """Published / within 2x and covering / the plain-sampling cost for the published relative error."""
    from ..core.stats import Z_95

    published = [r for r in rows if r.natural.rate.value is not None]
    p = brute.rate
    good = sum(1 for r in published
               if p and 0.5 <= r.natural.rate.value / p <= 2 and r.natural.rate.lo <= p <= r.natural.rate.hi)
    bounds = [r.natural.rate.hi for r in rows if r.natural.rate.value is None and r.natural.rate.hi is not None]
    text = (f"published {len(published)} of {len(rows)} ({good} within 2x and covering); withheld with a bound "
            f"{len(bounds)}, of which {sum(b >= p for b in bounds)} hold")
    if not published or not p:
        return text + "; no cost ratio"
    # The published intervals' own relative standard error (log scale: (log hi - log rate) / 1.96).
    rel = statistics.fmean(math.log(r.natural.rate.hi / r.natural.rate.value) / Z_95 for r in published)
    plain_needed = (1 - p) / (p * rel ** 2)
    ratio = plain_needed / budget
    return (text + f"; relative error {rel:.2f}: plain sampling needs {plain_needed:.0f} rollouts for the same, "
            f"{ratio:.1f}x the rollouts, {ratio / 2:.1f}x the forward passes (each monitor rollout runs both models)")

if __name__ == "__main__":
    main()
