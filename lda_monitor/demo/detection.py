"""``lda-monitor bench detection``: what the monitor catches, how rare it was, and how early.

For each training seed of a scenario (:mod:`lda_monitor.demo.scenarios`): train with the monitor
attached (amplified rollouts and a plain control at the same budget, every evaluation); at the
first evaluation where amplified rollouts are flagged, measure there, on the in-training policy,

* the natural rate: plain rollouts with the monitor's own prompts, sampling settings and judge
  (:func:`lda_monitor.demo.brute_force.brute_force_rate`, cached per chunk and resumable), in
  blocks, stopping by the sequential rule of :mod:`lda_monitor.demo.detection_stats`;
* the amplified rate: ``natural_rate.amplified_rollouts`` rollouts at that evaluation's alpha;
* the amplification with its 95% interval (scipy's relative-risk interval);
* with ``alphas`` (``--alphas``), the same amplified count and amplification at each of those
  alphas too, against the same natural rate: what another alpha schedule would have measured at
  that step (the issue's "which schedule would have caught it, measured").

Then training goes on to its end, so the first step at which *plain* sampling at the monitor's
budget flags anything is known too. Also: false alarms at step 0 (the reference is the policy
itself there, so every flag is a false alarm of amplification) and whether judge-free discovery
names the behaviour (a top-3 over-produced phrase inside the scenario's ``behaviour`` text) at
the first amplified detection, and when it first does.

Each seed's result is saved in ``DIR/<scenario>/seed-<n>/result.json`` and reused by a rerun with
the same scenario file and mode, so a killed run resumes at the seed it was on (whose brute-force
chunks are cached too: a seeded CPU run retrains to the same weights).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from pathlib import Path

from transformers import TrainerCallback

from .detection_stats import decision, ratio_interval
from .scenarios import Scenario

AMPLIFIED_SEED = 555_000  # the extra amplified rollouts' streams: neither the monitor's nor brute force's
TOP_N = 3


def cpu_model() -> str:
    """``lscpu``'s model name (what the issue asks the results to name)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class DetectionCheck(TrainerCallback):
    """Measures the natural and amplified rates at the first evaluation with an amplified flag.

    Placed after the monitor in the callback list, like :class:`~.brute_force.BruteForceCheck`,
    and restoring the training state the way the monitor does."""

    def __init__(self, monitor, scenario: Scenario, cache_dir: Path, *, max_plain: int, amplified: int,
                 plain_seconds: float | None = None, alphas: tuple[float, ...] = (), echo=print):
        self.monitor, self.scenario, self.cache_dir, self.echo = monitor, scenario, cache_dir, echo
        self.max_plain, self.amplified, self.plain_seconds = max_plain, amplified, plain_seconds
        self.alphas = alphas
        self.result: dict | None = None

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        history = self.monitor.progress.history
        if (self.result is None and history and history[-1]["step"] == state.global_step > 0
                and history[-1].get("lda/flagged", 0) > 0):
            self.result = self.measure(history[-1], model, processing_class)

    def measure(self, metrics: dict, model, tokenizer) -> dict:
        import torch

        from ..engine.pairs import TwoModelPair
        from ..monitor.hygiene import preserved_training_state
        from .brute_force import BRUTE_CHUNK, brute_force_rate

        step, alpha = int(metrics["step"]), float(metrics["lda/alpha"])
        items, judge, sampling = self.monitor.items, self.monitor.judge, self.monitor.config.sampling()
        nr = self.scenario.natural_rate
        per_chunk = BRUTE_CHUNK * len(items)
        block = max(1, math.ceil(min(nr.block, self.max_plain) / per_chunk))  # chunks per look
        max_chunks = max(1, math.ceil(self.max_plain / per_chunk))
        looks = math.ceil(max_chunks / block)
        start = time.perf_counter()
        with preserved_training_state([model], tokenizer), torch.no_grad():
            model.eval()
            with self.monitor.reference.pair(model, tokenizer) as pair:

                def amplified_at(a: float, cache: str):
                    rate = brute_force_rate(pair, items, judge, math.ceil(self.amplified / len(items)), sampling,
                                            cache=self.cache_dir / cache, alpha=a, seed=AMPLIFIED_SEED)
                    self.echo(f"[detection] step {step}: amplified {rate.k}/{rate.n} at alpha {a:g} "
                              f"({time.perf_counter() - start:.0f} s)")
                    return rate

                amp = amplified_at(alpha, f"amplified-{step}.json")
                sweep = {a: amplified_at(a, f"amplified-{step}-alpha-{a:g}.json") for a in self.alphas}
            plain_pair = TwoModelPair(model, model, tokenizer)  # plain sampling runs the policy alone
            chunks, verdict, stopped, plain_start = 0, None, "budget spent", time.perf_counter()
            while chunks < max_chunks and verdict is None:
                if chunks and self.plain_seconds is not None and time.perf_counter() - plain_start > self.plain_seconds:
                    stopped = f"time budget ({self.plain_seconds:g} s) spent"
                    break
                chunks = min(chunks + block, max_chunks)
                natural = brute_force_rate(plain_pair, items, judge, chunks * BRUTE_CHUNK, sampling,
                                           cache=self.cache_dir / f"plain-{step}.json")
                verdict = decision(amp.k, amp.n, natural.k, natural.n, nr.target, looks)
                self.echo(f"[detection] step {step}: plain {natural.k}/{natural.n}; target {nr.target:g}x "
                          f"{verdict or 'undecided'} ({time.perf_counter() - start:.0f} s)")
        ratio = ratio_interval(amp.k, amp.n, natural.k, natural.n)
        return {
            "natural_rate": {"step": step, "flags": natural.k, "rollouts": natural.n, "lo": natural.lo,
                             "hi": natural.hi},
            "amplified_rate": {"flags": amp.k, "rollouts": amp.n, "lo": amp.lo, "hi": amp.hi, "alpha": alpha},
            "amplification": ratio.to_dict(),
            "target": {"amplification_lo": nr.target, "decision": verdict or "undecided", "looks_planned": looks,
                       "stopped": "decided" if verdict else stopped,
                       "rule": "stop at the first look whose Bonferroni interval (level 1 - 0.05/looks) lies "
                               "wholly above or below the target"},
            "alpha_sweep": [{"alpha": a, "flags": r.k, "rollouts": r.n, "lo": r.lo, "hi": r.hi,
                             "amplification": ratio_interval(r.k, r.n, natural.k, natural.n).to_dict()}
                            for a, r in sweep.items()],
            "measure_seconds": round(time.perf_counter() - start, 1),
        }


def judge_pvalue(records, step: int, judge: str) -> float | None:
    """The one-sided exact p-value that amplified rollouts at ``step`` are flagged by ``judge`` more
    often than plain ones (discovery's within-prompt test, :func:`~lda_monitor.core.discovery.
    stratified_pvalues`, applied to the judge's verdicts alone). It is the best discovery could do
    on the behaviour itself, with no correction for the many phrases it tests: when it is above
    discovery's q level, no phrase test at that budget can name the behaviour there, and the lag is
    the budget's, not the method's."""
    from ..core.discovery import stratified_pvalues

    cells: dict[str, list[int]] = {}
    for r in records:
        verdict = r.verdicts.get(judge)
        if r.step == step and r.kind in ("amplified", "plain") and verdict is not None and verdict.flagged is not None:
            cell = cells.setdefault(r.rendered_prompt, [0, 0, 0, 0])
            side = 0 if r.kind == "amplified" else 2
            cell[side] += bool(verdict.flagged)
            cell[side + 1] += 1
    return stratified_pvalues([tuple(c) for c in cells.values()])[0] if cells else None


def settings_key(scenario: Scenario, budget: dict) -> str:
    """What a saved seed result depends on: the scenario file's text and the budgets."""
    text = Path(scenario.source).read_text(encoding="utf-8") if Path(scenario.source).is_file() else scenario.source
    return hashlib.sha256(f"{text}\n{sorted(budget.items())}".encode()).hexdigest()[:16]


def plain_budget(scenario: Scenario, quick: bool, max_plain: int | None = None) -> int:
    """Plain rollouts per seed at most: ``max_plain``, else the scenario's budget for the mode."""
    if max_plain is not None:
        return max_plain
    return scenario.natural_rate.quick_max_rollouts if quick else scenario.natural_rate.max_rollouts


def run_seed(scenario: Scenario, seed: int, out: Path, *, quick: bool, max_plain: int | None = None,
             amplified: int | None = None, plain_seconds: float | None = None, alphas: tuple[float, ...] = (),
             load_model=None, benign_answers=None, echo=print) -> dict:
    """Train one seed with the monitor and the detection check; the seed's entry of ``detection.json``.

    ``load_model`` (a function returning ``(model, tokenizer)``; default the embedded model in the
    hardware's fast dtype) and ``benign_answers`` (a function of ``(model, tokenizer, seed)``;
    default the base model's own answers) are for tests on tiny models."""
    import torch
    from transformers import PrinterCallback

    from ..core.records import read_records, records_path
    from ..core.summary import summarize
    from ..engine.dtypes import dtype_name, resolve_dtype
    from ..monitor.callback import LDAMonitorCallback
    from .run import _benign_answers
    from .scenario_training import build_trainer

    seed_dir = out / scenario.name / f"seed-{seed}"
    saved = seed_dir / "result.json"
    budget = {"max_plain_rollouts": plain_budget(scenario, quick, max_plain),
              "amplified_rollouts": amplified or scenario.natural_rate.amplified_rollouts,
              "plain_seconds": plain_seconds, **({"alphas": list(alphas)} if alphas else {})}
    key = settings_key(scenario, budget)
    if saved.is_file():
        result = json.loads(saved.read_text())
        if result.get("settings_key") == key:
            # Discovery reads the saved records alone: re-analysed, so its fields follow the code.
            records = list(read_records(records_path(seed_dir / "run" / "lda_monitor")))
            result.update(discovery_fields(scenario, records, result["first_detection_step_amplified"]))
            saved.write_text(json.dumps(result, indent=1, allow_nan=False))
            echo(f"[detection] {scenario.name} seed {seed}: reusing {saved} (discovery re-read from its records)")
            return result
    seed_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if load_model is None:
        from ..engine.embedded import EMBEDDED_NAME
        from ..engine.models import load_model as load

        dtype = resolve_dtype("auto")
        model, tokenizer = load(EMBEDDED_NAME, dtype=dtype)
    else:
        model, tokenizer = load_model()
    dtype = dtype_name(next(model.parameters()).dtype)
    m = scenario.monitor
    monitor = LDAMonitorCallback(prompts=list(m.prompts), judge=m.judge, every_n_steps=m.every_n_steps, alpha=m.alpha,
                                 samples_per_prompt=m.samples_per_prompt, max_new_tokens=m.max_new_tokens, seed=seed,
                                 batch_size=64, warn_time_share=1.0, natural_rate=False,
                                 discovery_confirm_samples_per_prompt=m.discovery_confirm_samples_per_prompt)
    check = DetectionCheck(monitor, scenario, seed_dir, max_plain=budget["max_plain_rollouts"],
                           amplified=budget["amplified_rollouts"], plain_seconds=plain_seconds, alphas=alphas,
                           echo=echo)
    benign = None
    if scenario.training.method == "sft":
        benign = (benign_answers or _benign_answers)(model, tokenizer, seed)
    trainer = build_trainer(scenario, model, tokenizer, seed_dir / "run", seed=seed, callbacks=[monitor, check],
                            benign_answers=benign)
    trainer.remove_callback(PrinterCallback)
    echo(f"[detection] {scenario.name} seed {seed}: training {scenario.training.steps} steps "
         f"({scenario.training.method}, {dtype}, {torch.get_num_threads()} threads)")
    trainer.train()
    records = list(read_records(records_path(seed_dir / "run" / "lda_monitor")))
    rows = sorted((r for r in summarize(records) if r.category is None and r.judge == monitor.judge.name),
                  key=lambda r: r.step)
    amp_step = next((r.step for r in rows if r.step > 0 and r.amplified.flagged > 0), None)
    plain_step = next((r.step for r in rows if r.step > 0 and r.plain.flagged > 0), None)
    step0 = next((r for r in rows if r.step == 0), None)
    steps = scenario.training.steps
    result = {
        "seed": seed,
        "steps": steps,
        "first_detection_step_amplified": amp_step,
        "first_detection_step_plain": plain_step,
        "first_detection_fraction_amplified": None if amp_step is None else amp_step / steps,
        "first_detection_fraction_plain": None if plain_step is None else plain_step / steps,
        "false_alarms_step0": 0 if step0 is None else step0.amplified.flagged,
        "false_alarms_step0_plain": 0 if step0 is None else step0.plain.flagged,
        **discovery_fields(scenario, records, amp_step),
        "judge_pvalue_at_detection": None if amp_step is None else judge_pvalue(records, amp_step, monitor.judge.name),
        "evaluations": [{"step": r.step, "alpha": r.alpha, "flagged": r.amplified.flagged, "n": r.amplified.n,
                         "flagged_plain": r.plain.flagged, "n_plain": r.plain.n} for r in rows],
        "natural_rate": None, "amplified_rate": None, "amplification": None,
        "dtype": dtype,
        "budget": budget,
        "seconds": None,
        "settings_key": key,
    }
    if check.result is not None:
        result.update(check.result)
    else:
        result["note"] = ("amplified sampling never flagged the behaviour: no detection step, so no natural rate, "
                          "amplified rate or amplification was measured")
    result["seconds"] = round(time.perf_counter() - start, 1)
    saved.write_text(json.dumps(result, indent=1, allow_nan=False))
    return result


def discovery_fields(scenario: Scenario, records: list, amp_step: int | None) -> dict:
    """What judge-free discovery found in one seed's records: at the first amplified detection
    (``discovery_hit``: the behaviour among its top 3 over-produced phrases, or the length shift a
    ``behaviour_length`` scenario names), its first step, anything at step 0, and the confirmation
    round's rollouts per evaluation (its cost)."""
    from ..core.discovery import discover_records
    from ..core.records import KIND_CONFIRM
    from .run import in_planted_sentence

    discoveries = discover_records(records)

    def hit(d) -> bool:
        if scenario.behaviour_length is not None:
            return d.length is not None and d.length.direction == scenario.behaviour_length
        return scenario.behaviour is not None and any(
            in_planted_sentence(p.text, scenario.behaviour) for p in d.over()[:TOP_N])

    at_detection = next((d for d in discoveries if d.step == amp_step), None)
    confirm: dict[int, int] = {}
    for r in records:
        if r.kind == KIND_CONFIRM:
            confirm[r.step] = confirm.get(r.step, 0) + 1
    return {
        "discovery_hit": bool(at_detection is not None and hit(at_detection)),
        "discovery_top_at_detection": [] if at_detection is None else [p.text for p in at_detection.over()[:TOP_N]],
        "discovery_confirmed_at_detection": [] if at_detection is None else [
            p.text for p in at_detection.over()[:TOP_N] if p.confirmed],
        "first_discovery_step": next((d.step for d in discoveries if hit(d)), None),
        "discovery_false_phrases_step0": sum(len(d.over()) for d in discoveries if d.step == 0),
        "discovery_false_length_step0": sum(d.length is not None for d in discoveries if d.step == 0),
        "discovery_length_at_detection": None if at_detection is None or at_detection.length is None
        else at_detection.length.line(),
        "confirmation_rollouts": {str(step): n for step, n in sorted(confirm.items())},
    }


def run_detection(scenario: Scenario, seeds: list[int], out: Path, *, quick: bool, command: str = "",
                  echo=print, **seed_options) -> dict:
    """Every seed of ``scenario``; merges its entry into ``out/detection.json`` (other scenarios'
    entries, and this scenario's other seeds, kept: a process per seed may share ``out``) and
    rewrites the plot and the table from the whole file."""
    from .detection_report import write_report

    out.mkdir(parents=True, exist_ok=True)
    path = out / "detection.json"
    report = json.loads(path.read_text()) if path.is_file() else {"scenarios": {}}
    results = [run_seed(scenario, seed, out, quick=quick, echo=echo, **seed_options) for seed in seeds]
    if path.is_file():  # another process may have added seeds meanwhile (one process per seed)
        report = json.loads(path.read_text())
    earlier = [s for s in report["scenarios"].get(scenario.name, {}).get("seeds", []) if s["seed"] not in seeds]
    report["scenarios"][scenario.name] = {
        "seeds": sorted(earlier + results, key=lambda s: s["seed"]), "scenario_file": scenario.source, "quick": quick,
        "monitor": {"alpha": scenario.monitor.alpha, "every_n_steps": scenario.monitor.every_n_steps,
                    "samples_per_prompt": scenario.monitor.samples_per_prompt, "prompts": len(scenario.monitor.prompts),
                    "max_new_tokens": scenario.monitor.max_new_tokens, "judge": scenario.monitor.judge},
        "command": command,
    }
    report["cpu"] = cpu_model()
    path.write_text(json.dumps(report, indent=1, allow_nan=False))
    figure, table = write_report(report, out)
    echo(f"wrote {path}, {figure} and {table}")
    return report

