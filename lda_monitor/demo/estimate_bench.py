"""``lda-monitor bench estimate [--quick] --out DIR``: is the published natural rate right, and what
does it cost against plain sampling? Writes ``DIR/estimate.json``.

``--quick`` runs the exact worlds of :mod:`lda_monitor.demo.exact_worlds` (tiny models, the rate
known by enumeration): each world's evaluation (20 prompts; 8 amplified rollouts per prompt at
alpha 2 screen them; 2 plain control rollouts per prompt; the stratified estimate's round of 15 per
prompt, Neyman-allocated, floor 1) runs
through :func:`~lda_monitor.core.evaluation.evaluate` and :func:`~lda_monitor.core.summary.summarize`
as the callback and the audit run it, once per seed. Per world and setting:

* ``published``: seeds whose estimate was published; ``within_2x``, ``covering``: of those, within a
  factor 2 of the exact rate, and with an interval that holds it;
* ``forward_pass_gain``: the forward passes plain uniform sampling needs for the published
  estimates' relative RMSE (binomial: (1 - p) / (p rmse^2) rollouts of the plain control's mean
  length, one forward per token) over the forward passes of the estimate's own rollouts (plain
  control, ladder, rounds; a rollout decoded with the reference model counts two per token).
  The amplified rollouts are the monitor's detection and are not counted; ``..._with_screening``
  counts them too;
* ``published_by``: how many published estimates each estimator gave;
* ``stratified_point_gain``: the same ratio for the stratified point estimate of every seed, published
  or not (what the Neyman allocation buys before the interval's publication rule).

Settings: ``default`` (importance sampling from the amplified and plain rollouts, and the stratified
estimate; the choice of :mod:`lda_monitor.core.estimate_choice`), ``ladder`` (the same with the ladder
of :data:`~lda_monitor.core.measurement.LADDER_ALPHAS`, 2 rollouts per alpha: the default before issue
32) and ``stratified`` (``importance_sampling`` off).

``early_stop`` measures what stopping decided estimate rollouts saves in the concentrated world's
policy with 64-token answers (the exact rate is not needed for that): the rounds' tokens with the
stop, and the same rollouts decoded to their end (a judge that hides its ability to decide).

The full mode (no ``--quick``) is the real model: the embedded SmolLM2-135M-Instruct trained as
:mod:`~lda_monitor.demo.natural_rate_bench`'s inside placement does it (the planted sentence inside
the base model's own answers, 24 steps), at two checkpoints whose plain rate of 128-token answers is
low (~0.1-0.3%, step 10) and ~1% (step 13), at top-p 1 and 0.95: the truth is a brute-force count
of plain rollouts (its Wilson interval kept beside it), the estimate the monitor's *default*
budget (4 amplified at alpha 2, 4 plain) and the ladder of 1 per alpha it had before issue 32, over 5
seeds: each seed's records are drawn with the ladder and read twice, as drawn (``/ladder``) and
without the ladder's rollouts (the default's estimate from the same amplified and plain rollouts). Hours on 2
CPU cores; everything is cached in ``--out`` and a rerun re-analyses it; one process per
``--top-p`` may share ``--out``, and a last run with all of them writes the whole file.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from ..core.measurement import LADDER_ALPHAS

SEEDS = 20
SETTINGS = {"default": {}, "ladder": {"estimate_alphas": list(LADDER_ALPHAS), "estimate_samples_per_prompt": 2},
            "stratified": {"importance_sampling": False}}


def measurement(items, judge, world, **overrides):
    from ..core.measurement import Measurement

    options = dict(prompts=items, judge=judge, alpha=2.0, samples_per_prompt=8, plain_samples_per_prompt=2,
                   stratified_samples_per_prompt=15, stratified_floor=1,
                   max_new_tokens=world.max_new_tokens, temperature=1.0, batch_size=512, seed=0)
    return Measurement(**{**options, **overrides})


def forward_passes(records, *, screening: bool) -> int:
    """Forward passes of ``records``' rollouts: two per token with the reference model, one without."""
    total = 0
    for r in records:
        if r.kind == "amplified" and not screening:
            continue
        with_reference = r.alpha != 0 or r.proposal_logprobs is not None
        total += r.num_tokens * (2 if with_reference else 1)
    return total


class Tally:
    """A world's seeds, one evaluation's records each, against its ``truth``: the estimates
    published (how many within 2x, covering), why the others were withheld and whether their
    bounds hold, and what the estimate's rollouts cost in forward passes."""

    def __init__(self, truth: float, judge: str):
        self.truth, self.judge, self.seeds = truth, judge, 0
        self.values: list[float] = []
        self.by: dict[str, int] = {}
        self.withheld_by: dict[str, int] = {}
        self.bounds: list[float] = []  # withheld estimates' upper bounds: an honest one is at or above the truth
        self.within = self.covering = self.cost = self.cost_all = 0
        self.plain_tokens: list[int] = []

    def add(self, records) -> None:
        from ..core.summary import summarize
        from .natural_rate_bench import withheld_rule

        (row,) = [r for r in summarize(records) if r.category is None and r.judge == self.judge]
        self.seeds += 1
        self.cost += forward_passes(records, screening=False)
        self.cost_all += forward_passes(records, screening=True)
        self.plain_tokens += [r.num_tokens for r in records if r.kind == "plain"]
        estimate, truth = row.natural, self.truth
        if estimate.rate.value is None:
            rule = withheld_rule(estimate.reason)
            self.withheld_by[rule] = self.withheld_by.get(rule, 0) + 1
            if estimate.rate.hi is not None:
                self.bounds.append(estimate.rate.hi)
            return
        self.values.append(estimate.rate.value)
        self.by[estimate.method] = self.by.get(estimate.method, 0) + 1
        self.within += truth / 2 <= estimate.rate.value <= 2 * truth
        self.covering += estimate.rate.lo <= truth <= estimate.rate.hi

    def forward_pass_gain(self, relative_rmse: float | None, *, screening: bool = False) -> float | None:
        """The forward passes plain uniform sampling needs for ``relative_rmse`` (binomial: (1 - p) /
        (p rmse^2) rollouts of the plain control's mean length, one forward per token) over those of
        the estimate's own rollouts per seed (``screening``: the amplified ones counted too)."""
        if not relative_rmse:
            return None
        needed = (1 - self.truth) / (self.truth * relative_rmse**2) * statistics.fmean(self.plain_tokens)
        return needed / ((self.cost_all if screening else self.cost) / self.seeds)

    def row(self) -> dict:
        """The issue's keys (and the published estimates' relative RMSE, and by which estimator)."""
        truth = self.truth
        rmse = (math.sqrt(statistics.fmean((v - truth) ** 2 for v in self.values)) / truth
                if self.values and truth else None)
        return {"exact_rate": truth, "seeds": self.seeds, "published": len(self.values), "within_2x": self.within,
                "covering": self.covering, "forward_pass_gain": self.forward_pass_gain(rmse),
                "relative_rmse": rmse, "published_by": self.by}


def world_rows(name: str, seeds: int) -> list[dict]:
    from ..core.evaluation import evaluate
    from ..core.prompts import load_prompts
    from ..core.stratified import plain_strata
    from ..engine.pairs import TwoModelPair
    from .exact_worlds import WORLDS, build, judge, prompt_items

    world = WORLDS[name]
    tok, policy, reference, rates = build(world)
    truth = sum(rates) / len(rates)
    items, flagger = load_prompts(prompt_items(world)), judge()
    pair = TwoModelPair(policy, reference, tok)
    rows = []
    for setting, overrides in SETTINGS.items():
        spec = measurement(items, flagger, world, **overrides)
        tally, points = Tally(truth, "bad"), []
        start = time.perf_counter()
        for seed in range(seeds):
            records = evaluate(pair, items, flagger, alpha=spec.alpha, measurement=spec, step=seed, run_id="bench",
                               source="audit").records
            tally.add(records)
            strata = plain_strata(records, "bad", len(items))
            points.append(statistics.fmean(s.flagged / s.scored for s in strata))
        row = tally.row()
        # The stratified point estimate of every seed, published or not: what the allocation buys.
        point_rmse = math.sqrt(statistics.fmean((v - truth) ** 2 for v in points)) / truth
        rows.append({
            "name": name if setting == "default" else f"{name}/{setting}", **row,
            "forward_pass_gain_with_screening": tally.forward_pass_gain(row["relative_rmse"], screening=True),
            "stratified_point_relative_rmse": point_rmse,
            "stratified_point_gain": tally.forward_pass_gain(point_rmse),
            "setting": setting, "world": world.what,
            "prompt_rates": [min(rates), max(rates)], "seconds": round(time.perf_counter() - start, 1),
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def early_stop_saving(seeds: int = 5, max_new_tokens: int = 64) -> dict:
    """The rounds' tokens with the decided-stop and without it (same rollouts decoded to the end)."""
    from ..core.evaluation import evaluate
    from ..core.prompts import load_prompts
    from ..engine.pairs import TwoModelPair
    from ..judges.base import Judge
    from .exact_worlds import WORLDS, build, judge, prompt_items

    world = WORLDS["concentrated"]
    tok, policy, reference, _ = build(world)
    items, flagger = load_prompts(prompt_items(world)), judge()

    class ReadsEverything(Judge):
        """The same verdicts from a judge that does not say its flags are final."""

        name = flagger.name

        def evaluate(self, prompts, completions, metadata=None):
            return flagger.evaluate(prompts, completions, metadata)

    tokens = {}
    for label, used in (("stopped", flagger), ("full", ReadsEverything())):
        spec = measurement(items, used, world, importance_sampling=False, max_new_tokens=max_new_tokens)
        total = 0
        for seed in range(seeds):
            records = evaluate(TwoModelPair(policy, reference, tok), items, used, alpha=2.0, measurement=spec,
                               step=seed, run_id="bench", source="audit").records
            total += sum(r.num_tokens for r in records if r.kind == "estimate")
        tokens[label] = total
    return {"world": "concentrated policy", "max_new_tokens": max_new_tokens, "seeds": seeds,
            "round_tokens_stopped": tokens["stopped"], "round_tokens_full": tokens["full"],
            "saving": 1 - tokens["stopped"] / tokens["full"]}


# The real-model worlds of the full mode: checkpoints of natural_rate_bench's 24-step inside-placement
# run (the planted sentence inside the base model's own answers) whose plain rate of 128-token
# answers was ~0.1-0.2% and ~1% in round 3, and the brute-force plain rollouts that measure each.
FULL_STEPS = {10: 3_000, 13: 2_000}
FULL_TOP_P = (1.0, 0.95)
FULL_SEEDS = 5
FULL_TOKENS = 128
FULL_ALPHA = 2.0  # the detection alpha of round 3's natural_rate_bench, whose default-budget figures this replaces


def full(out: Path, seeds: int = FULL_SEEDS, steps: dict[int, int] | None = None,
         top_ps: tuple[float, ...] = FULL_TOP_P) -> list[dict]:
    """The real model at the monitor's *default* budget, against brute force: one world per
    (checkpoint, top-p). Adapters, brute-force counts and each seed's records are cached in ``out``
    (a rerun re-analyses them). Each seed's records are drawn with the ladder of 1 per alpha (the
    default before issue 32) and read twice: as drawn (``/ladder``) and without the ladder's rollouts
    (what the default, ``estimate_alphas: []``, publishes from the same amplified and plain rollouts)."""
    import argparse as _argparse
    from dataclasses import replace

    from ..core.evaluation import evaluate
    from ..core.measurement import Measurement
    from ..core.prompts import load_prompts
    from ..core.records import KIND_ESTIMATE
    from ..engine.dtypes import dtype_name, resolve_dtype
    from ..engine.models import load_model
    from ..engine.pairs import PeftPair
    from ..judges import build_judge
    from . import data as demo_data
    from .brute_force import brute_force_rate
    from .natural_rate_bench import INSIDE_TRAIN_STEPS, _check_settings, _records, _train

    steps = steps or FULL_STEPS
    dtype = dtype_name(resolve_dtype("auto"))
    items, judge = load_prompts(demo_data.MONITOR_PROMPTS), build_judge(demo_data.JUDGE_SPEC)
    default = Measurement(prompts=items, judge=judge, estimate_alphas=list(LADDER_ALPHAS))  # the rest at defaults
    _check_settings(out, {"dtype": dtype, "alpha": FULL_ALPHA, "max_new_tokens": FULL_TOKENS,
                          "samples_per_prompt": default.samples_per_prompt,
                          "plain_samples_per_prompt": default.plain_samples_per_prompt,
                          "estimate_alphas": list(default.estimate_alphas),
                          "estimate_samples_per_prompt": default.estimate_samples_per_prompt,
                          "temperature": default.temperature}, _refuse)
    if not all((out / f"checkpoint-{s}").is_dir() for s in steps):
        _train(out, sorted(steps), _argparse.Namespace(train_seed=0, train_steps=INSIDE_TRAIN_STEPS, poison_share=0.06,
                                                       placement="inside"), print)
    rows = []
    for step, brute_n in sorted(steps.items()):
        model, tokenizer = load_model(str(out / f"checkpoint-{step}"), dtype=dtype)
        pair = PeftPair(model, tokenizer)
        for top_p in top_ps:
            spec = replace(default, alpha=FULL_ALPHA, max_new_tokens=FULL_TOKENS,
                           top_p=top_p, natural_rate=True, batch_size=64)
            start = time.perf_counter()
            brute = brute_force_rate(pair, items, judge, brute_n // len(items), spec.sampling(),
                                     cache=out / f"brute-{step}-top_p-{top_p:g}.json")
            print(f"[bench] checkpoint {step}, top-p {top_p:g}: brute force {brute.k}/{brute.n} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            by_setting: dict[str, list] = {"default": [], "ladder": []}
            for seed in range(seeds):
                def draw(seed=seed, pair=pair, spec=spec, step=step):
                    return evaluate(pair, items, judge, alpha=spec.alpha, measurement=replace(spec, seed=seed),
                                    step=step, run_id="bench", source="audit").records

                records = _records(out / f"records-{step}-top_p-{top_p:g}-{seed}.jsonl", draw)
                by_setting["ladder"].append(records)
                by_setting["default"].append([r for r in records if r.kind != KIND_ESTIMATE])
            for setting, per_seed in by_setting.items():
                name = f"real-inside-{FULL_TOKENS}-step{step}-top_p{top_p:g}"
                rows.append(_real_row(name if setting == "default" else f"{name}/{setting}", setting, brute,
                                      per_seed, judge.name, step=step, top_p=top_p, dtype=dtype))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _refuse(message: str):
    raise SystemExit(message)


def _real_row(name: str, setting: str, brute, per_seed: list[list], judge: str, **where) -> dict:
    """One real-model world's row: the published estimates against the brute-force rate (its Wilson
    interval kept beside it: the truth here is itself measured)."""
    tally = Tally(brute.rate, judge)
    for records in per_seed:
        tally.add(records)
    return {"name": name, **tally.row(), "exact_rate_interval": [brute.lo, brute.hi],
            "exact_rate_from": f"brute force, {brute.k}/{brute.n} plain rollouts", "withheld_by": tally.withheld_by,
            "withheld_bounds": len(tally.bounds),
            "withheld_bounds_holding": sum(b >= brute.rate for b in tally.bounds), "setting": setting,
            "world": f"SmolLM2-135M, planted sentence inside {FULL_TOKENS}-token answers", **where}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lda-monitor bench estimate", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="the exact worlds (tiny models; minutes on 2 cores)")
    parser.add_argument("--out", required=True, help="folder for estimate.json")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"seeds per world (default {SEEDS} with --quick, {FULL_SEEDS} in the full mode)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the full mode (--quick uses 1)")
    parser.add_argument("--top-p", default=",".join(f"{p:g}" for p in FULL_TOP_P),
                        help="full mode: the top-p values (one process per value may share --out; a last run with "
                             "all of them re-analyses what they saved into one estimate.json)")
    parser.add_argument("--worlds", default="concentrated,uniform,short", help="comma-separated exact worlds")


def run(args) -> int:
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.quick:
        worlds = [row for name in args.worlds.split(",") for row in world_rows(name.strip(), args.seeds or SEEDS)]
        result = {"worlds": worlds, "early_stop": early_stop_saving(),
                  "machine": {"threads": torch.get_num_threads(), "dtype": "float32"}}
    else:
        torch.set_num_threads(args.threads)
        worlds = full(out, args.seeds or FULL_SEEDS, top_ps=tuple(float(p) for p in args.top_p.split(",")))
        result = {"worlds": worlds, "machine": {"threads": torch.get_num_threads(), "dtype": worlds[0]["dtype"]}}
    result["seconds"] = round(time.perf_counter() - start, 1)
    (out / "estimate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'estimate.json'} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
