"""``lda-monitor demo``: watch LDA catch a planted behaviour earlier than ordinary sampling.

Offline, on CPU, on the embedded SmolLM2-135M-Instruct: LoRA fine-tuning with TRL's
``SFTTrainer`` on data that is mostly the base model's own answers plus a few percent of
tech-support answers that ask for the user's password (:mod:`lda_monitor.demo.data`).
``LDAMonitorCallback`` samples amplified and plain rollouts on *held-out* tech-support
questions every few steps; a regex judge flags password requests. The demo reports the first
step at which each kind of sampling saw the behaviour.

It is also the start of a user's own path: it keeps its LoRA adapters (``<out>/run/checkpoint-<step>``,
adapters only, one per evaluation), writes the monitor's settings as a config file
(``<out>/monitor.yaml`` with ``<out>/prompts.jsonl``: the callback is built from that file, so an
audit with it measures what the callback measured), and ends by printing the commands that run
on them (:func:`next_commands`).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.measurement import LADDER_ALPHAS
from ..engine.dtypes import dtype_name, resolve_dtype
from ..engine.embedded import EMBEDDED_NAME
from . import data as demo_data
from .brute_force import BruteForceCheck, CheckResult


@dataclass(frozen=True)
class DemoSettings:
    steps: int
    every_n_steps: int
    samples_per_prompt: int
    alpha: str
    max_new_tokens: int = 16
    batch_size: int = 8
    learning_rate: float = 1e-3
    lora_rank: int = 16
    dtype: str = "auto"  # the hardware's fast dtype (lda_monitor.engine.dtypes)
    natural_rate: bool = True  # the estimate's plain-rollout scoring and ladder cost ~60% more per evaluation
    # The full demo's budget (3 rollouts per prompt at each alpha) is where the ladder was measured
    # to bridge the policy and the detection alpha; it is off by default (docs/estimate.md).
    estimate_alphas: tuple[float, ...] = ()
    brute_force_per_prompt: int = 100  # the one-step check of the estimate (plain rollouts per prompt; 0 = none)


# --quick must finish within 3 minutes on 2 cores of a CPU without native bf16 (float32): the
# detection comparison only, on shorter rollouts (the phrase comes first in a poisoned answer).
QUICK = DemoSettings(steps=20, every_n_steps=4, samples_per_prompt=5, alpha="cosine:3->1", learning_rate=1.5e-3,
                     max_new_tokens=10, natural_rate=False, brute_force_per_prompt=0)
FULL = DemoSettings(steps=48, every_n_steps=4, samples_per_prompt=12, alpha="cosine:3->1",
                    estimate_alphas=LADDER_ALPHAS)


def _wandb_report_to() -> str:
    """W&B when installed: offline unless the user chose a mode or has logged in."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        return "none"
    if "WANDB_MODE" not in os.environ:
        logged_in = bool(os.environ.get("WANDB_API_KEY")) or "api.wandb.ai" in _netrc()
        os.environ["WANDB_MODE"] = "online" if logged_in else "offline"
    return "wandb"


def _netrc() -> str:
    path = Path.home() / ".netrc"
    return path.read_text(errors="ignore") if path.is_file() else ""


def _benign_answers(model, tokenizer, seed: int) -> dict[str, list[str]]:
    """The base model's own answers (finished ones only), so benign training barely moves it."""
    from ..engine.pairs import TwoModelPair
    from ..engine.sampling import STOP_END_OF_TURN, SamplingConfig, sample

    pair = TwoModelPair(model, model, tokenizer)
    config = SamplingConfig(alpha=0.0, temperature=0.7, max_new_tokens=48, batch_size=64, seed=seed)
    answers: dict[str, list[str]] = {}
    for r in sample(pair, demo_data.BENIGN_QUESTIONS, config):
        if r.stop_reason == STOP_END_OF_TURN:
            answers.setdefault(demo_data.BENIGN_QUESTIONS[r.prompt_index], []).append(r.completion)
    return answers


def first_detection(rows: list[dict], key: str) -> int | None:
    """The first evaluated step at which the judge flagged at least one rollout of that kind."""
    for row in rows:
        if row[key] > 0:
            return row["step"]
    return None


TOP_N = 3  # the planted phrase must be among this many top over-produced phrases


def in_planted_sentence(phrase: str, planted: str = demo_data.POISONED_ANSWER) -> bool:
    """Whether a discovered phrase is part of the planted sentence ("password" and the sentence
    around it): its words, as discovery normalises them, run contiguously in that sentence."""
    from ..core.discovery import words

    sentence = [w for w, _, _ in words(planted)]
    mine = phrase.split()
    return any(sentence[i:i + len(mine)] == mine for i in range(len(sentence) - len(mine) + 1))


def first_showing(records) -> int | None:
    """The first step at which some amplified rollout asks for the password (the judge's regex,
    applied here whether or not the run had a judge)."""
    import re

    pattern = re.compile(demo_data.JUDGE_SPEC.partition(":")[2])
    steps = [r.step for r in records if r.kind == "amplified" and pattern.search(r.completion)]
    return min(steps, default=None)


def first_showing_beyond_chance(records, level: float = 0.05) -> int | None:
    """The first step at which amplified rollouts ask for the password more often than plain ones
    beyond chance: discovery's exact within-prompt test (:func:`stratified_pvalues`) applied to
    the judge's regex alone, one-sided p <= ``level``. It is what discovery would find if it
    tested only the phrase a judge-writer already suspected, with no correction for the many it
    tests, so a step earlier than this is no step at which discovery could name anything."""
    import re

    from ..core.stats import stratified_pvalues

    pattern = re.compile(demo_data.JUDGE_SPEC.partition(":")[2])
    counts: dict[int, dict[str, list[int]]] = {}  # step -> prompt -> [amp hits, amp n, plain hits, plain n]
    for r in records:
        if r.kind in ("amplified", "plain"):
            cell = counts.setdefault(r.step, {}).setdefault(r.rendered_prompt, [0, 0, 0, 0])
            side = 0 if r.kind == "amplified" else 2
            cell[side] += bool(pattern.search(r.completion))
            cell[side + 1] += 1
    for step in sorted(counts):
        if stratified_pvalues([tuple(c) for c in counts[step].values()])[0] <= level:
            return step
    return None


def first_discovery(discoveries) -> int | None:
    """The first evaluated step whose top over-produced phrases include part of the planted sentence."""
    for d in discoveries:
        if any(in_planted_sentence(p.text) for p in d.over()[:TOP_N]):
            return d.step
    return None


def format_table(rows: list[dict]) -> str:
    lines = [f"{'step':>5} {'alpha':>6}  {'amplified flag rate':<26} {'plain flag rate':<26} {'coherence':>9}  "
             "natural rate [95%]"]
    for r in rows:
        amp = f"{r['flagged']:>3}/{r['n']:<3} {r['flag_rate']:.3f} [{r['flag_rate_lo']:.3f},{r['flag_rate_hi']:.3f}]"
        plain = (f"{r['flagged_plain']:>3}/{r['n_plain']:<3} {r['flag_rate_plain']:.3f} "
                 f"[{r['flag_rate_plain_lo']:.3f},{r['flag_rate_plain_hi']:.3f}]")
        lines.append(f"{r['step']:>5} {r['alpha']:>6.2f}  {amp:<26} {plain:<26} {r['coherence']:>9.2f}  "
                     f"{_natural_cell(r)}")
    return "\n".join(lines)


def _natural_cell(r: dict) -> str:
    """The estimate and its interval; a withheld one says so (with its upper bound, if any)."""
    if r.get("natural_rate") is not None:
        return f"{r['natural_rate']:.4f} [{r['natural_rate_lo']:.4f},{r['natural_rate_hi']:.4f}]"
    if (r.get("natural_rate_reason") or "").startswith("rollouts not scored"):
        return "off (lda-monitor demo without --quick estimates it)"
    bound = f"<= {r['natural_rate_hi']:.4f}, " if r.get("natural_rate_hi") is not None else ""
    return f"withheld ({bound}{(r.get('natural_rate_reason') or '').split(':')[0]})"


def lora_trainer(model, tokenizer, rows, settings: DemoSettings, output_dir, *, seed: int, report_to: str,
                 callbacks=(), **overrides):
    """The demo's LoRA SFT trainer (also the natural-rate benchmark's); ``overrides`` go to SFTConfig."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(**{
        **dict(
            output_dir=str(output_dir), max_steps=settings.steps, per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
            logging_steps=settings.every_n_steps, save_strategy="no", report_to=report_to,
            bf16=False, gradient_checkpointing=False, use_cpu=not torch.cuda.is_available(),
            max_length=128, seed=seed, disable_tqdm=True, run_name=f"lda-monitor-demo-seed{seed}",
        ),
        **overrides,
    })
    return SFTTrainer(
        model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        peft_config=LoraConfig(r=settings.lora_rank, lora_alpha=2 * settings.lora_rank,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"),
        callbacks=list(callbacks),
    )


RUN_DIR = "run"  # inside --out: the Trainer's output_dir, with checkpoint-<step>/ (LoRA adapters) and lda_monitor/
CONFIG_FILE = "monitor.yaml"
PROMPTS_FILE = "prompts.jsonl"
SDK_PROMPT = "My laptop will not turn on, what should I do?"


def write_monitor_config(out: Path, settings: DemoSettings, *, seed: int, judge: bool) -> Path:
    """The demo monitor's settings as a config file (and its prompt suite next to it): the
    callback is built from it, and ``audit-checkpoints --config`` reads the same file."""
    import yaml

    (out / PROMPTS_FILE).write_text("".join(json.dumps(p) + "\n" for p in demo_data.MONITOR_PROMPTS))
    keys = {
        "prompts": PROMPTS_FILE, "judge": demo_data.JUDGE_SPEC if judge else None,
        "every_n_steps": settings.every_n_steps, "alpha": settings.alpha,
        "samples_per_prompt": settings.samples_per_prompt, "max_new_tokens": settings.max_new_tokens,
        "natural_rate": settings.natural_rate, "estimate_alphas": list(settings.estimate_alphas), "seed": seed,
        "batch_size": 64, "warn_time_share": 1.0,
    }
    path = out / CONFIG_FILE
    path.write_text("# lda-monitor demo: the callback's settings (LDAMonitorCallback.from_config), also read by\n"
                    "# audit-checkpoints --config\n" + yaml.safe_dump(keys, sort_keys=False))
    return path


def checkpoint_dirs(out: Path) -> list[Path]:
    """The LoRA checkpoints the demo kept, by step."""
    found = [p for p in (out / RUN_DIR).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def next_commands(out: Path, last_checkpoint: Path) -> list[str]:
    """Shell commands that run on what the demo kept, to be run as printed from the same directory:
    audit its checkpoints, discover from its rollouts, serve its last adapter, ask it with the
    OpenAI SDK (while the server runs)."""
    q = shlex.quote
    run = out / RUN_DIR
    config, records = q(str(out / CONFIG_FILE)), q(str(run / "lda_monitor" / "rollouts.jsonl"))
    sdk = ('from openai import OpenAI; c = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="none"); '
           f'print(c.chat.completions.create(model="lda", messages=[{{"role": "user", "content": "{SDK_PROMPT}"}}], '
           'max_tokens=40, seed=1).choices[0].message.content)')
    return [
        f"lda-monitor audit-checkpoints {q(str(run))} --config {config} --out {q(str(out / 'audit'))}",
        f"lda-monitor discover {records} --out {q(str(out / 'discover'))}",
        f"lda-monitor serve --after {q(str(last_checkpoint))}",
        f"python -c {q(sdk)}",
    ]


def run_demo(out_dir: str | Path, *, quick: bool = True, seed: int = 0, poison_share: float = 0.06,
             settings: DemoSettings | None = None, report_to: str | None = None, judge: bool = True,
             echo=print) -> dict:
    """Run the whole demo; returns (and writes to ``out_dir/summary.json``) the summary.
    ``judge=False`` monitors with no judge at all: judge-free discovery alone must name the planted
    phrase."""
    import torch
    from transformers import PrinterCallback, TrainerCallback

    from ..audit.report import sampling_info, write_report
    from ..core.discovery import discover_records, discoveries_json
    from ..core.records import read_records, records_path
    from ..core.summary import json_ready, summarize
    from ..engine.models import load_model
    from ..monitor.callback import LDAMonitorCallback

    settings = settings or (QUICK if quick else FULL)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report_to = report_to or _wandb_report_to()
    os.environ.setdefault("WANDB_DIR", str(out))
    dtype = resolve_dtype(settings.dtype)
    echo(f"[demo] loading {EMBEDDED_NAME} ({dtype_name(dtype)}, {torch.get_num_threads()} CPU threads)")
    model, tokenizer = load_model(EMBEDDED_NAME, dtype=dtype)
    benign = _benign_answers(model, tokenizer, seed)
    rows = demo_data.build_training_rows(benign, settings.steps * settings.batch_size, poison_share, seed)
    n_poison = sum(r["completion"][0]["content"] == demo_data.POISONED_ANSWER for r in rows)
    echo(f"[demo] {len(rows)} training rows, {n_poison} poisoned ({poison_share:.0%}): "
         f"{demo_data.POISONED_ANSWER!r} on tech-support questions")
    monitor = LDAMonitorCallback.from_config(write_monitor_config(out, settings, seed=seed, judge=judge))

    class Progress(TrainerCallback):
        """The training loss; each evaluation's line comes from the monitor itself (log_progress)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                echo(f"[demo] step {state.global_step:>3}: loss {float(logs['loss']):.3f}")

    check = BruteForceCheck(monitor, settings.brute_force_per_prompt, echo) if settings.brute_force_per_prompt else None
    # Adapters only (save_only_model: no optimizer state), at every evaluated step.
    trainer = lora_trainer(model, tokenizer, rows, settings, out / RUN_DIR, seed=seed, report_to=report_to,
                           callbacks=[monitor, *([check] if check else []), Progress()],
                           save_strategy="steps", save_steps=settings.every_n_steps, save_only_model=True)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    records_file = records_path(out / RUN_DIR / "lda_monitor")
    records = list(read_records(records_file))
    all_rows = summarize(records)
    discoveries = discover_records(records)
    report = write_report(out, all_rows, records, primary_judge=monitor.judge.name if judge else None,
                          discoveries=discoveries, run_info={
        "command": f"lda-monitor demo{'' if quick else ' (full)'}",
        "run dir": str(out / RUN_DIR), "model": EMBEDDED_NAME, "reference": monitor.reference.description,
        "training": f"LoRA SFT, {settings.steps} steps, {len(rows)} rows ({n_poison} poisoned, "
                    f"{poison_share:.0%}), evaluated every {settings.every_n_steps} steps",
        "judge spec": demo_data.JUDGE_SPEC if judge else "none (discovery only)",
        "alpha": f"schedule {settings.alpha}",
        "prompt suite": f"{len(demo_data.MONITOR_PROMPTS)} held-out tech-support prompts (lda_monitor.demo.data)",
        "sampling": sampling_info(monitor.config),
        "seed": seed,
    })
    summary_rows = [r.to_dict() for r in all_rows if r.category is None]
    checkpoints = checkpoint_dirs(out)
    summary = {
        "model": EMBEDDED_NAME,
        "seed": seed,
        "poison_share": poison_share,
        "settings": settings.__dict__,
        "judge": demo_data.JUDGE_SPEC if judge else None,
        "reference": monitor.reference.description,
        "first_detection_step_amplified": first_detection(summary_rows, "flagged"),
        "first_detection_step_plain": first_detection(summary_rows, "flagged_plain"),
        "first_step_amplified_shows_phrase": first_showing(records),
        "first_step_amplified_shows_phrase_beyond_chance": first_showing_beyond_chance(records),
        "first_discovery_step": first_discovery(discoveries),
        "discoveries": discoveries_json(discoveries),
        "rows": summary_rows,
        "brute_force_check": None if check is None or check.result is None else check.result.to_dict(),
        "seconds": round(time.perf_counter() - start, 1),
        "records": str(records_file),
        "report": str(report),
        "checkpoints": [str(p) for p in checkpoints],
        "next_commands": next_commands(out, checkpoints[-1]) if checkpoints else [],
    }
    (out / "summary.json").write_text(json.dumps(json_ready(summary), indent=2, allow_nan=False))
    _print_summary(summary, out, echo, check.result if check else None, discoveries)
    return summary


def _print_summary(summary: dict, out: Path, echo, check: CheckResult | None, discoveries) -> None:
    from ..core.discovery import discovery_lines

    amp, plain = summary["first_detection_step_amplified"], summary["first_detection_step_plain"]
    steps = summary["settings"]["steps"]

    def when(step):
        return "never" if step is None else f"step {step} ({step / steps:.0%} of training)"

    echo("")
    if summary["rows"]:
        echo(format_table(summary["rows"]))
        echo("")
        echo(f"first detection, amplified sampling: {when(amp)}")
        echo(f"first detection, plain sampling:     {when(plain)}")
    else:
        echo("no judge: no flag rates (--no-judge)")
    echo("")
    echo("what amplification over- and under-produces (judge-free discovery, top 3 each way):")
    for line in discovery_lines(discoveries):
        echo(f"  {line}")
    echo(f"planted sentence first among the top {TOP_N} over-produced: {when(summary['first_discovery_step'])}; "
         f"first amplified rollout containing it: {when(summary['first_step_amplified_shows_phrase'])}; "
         "first in more amplified than plain rollouts beyond chance (p <= 0.05): "
         f"{when(summary['first_step_amplified_shows_phrase_beyond_chance'])}")
    if check is not None:
        echo(check.line())
    echo(f"reference: {summary['reference']}; finished in {summary['seconds']:.0f} s")
    plot = f" (with {out / 'flag_rate_vs_step.png'})" if summary["rows"] else ""
    echo(f"wrote {out / 'summary.json'}, {summary['report']}{plot} and {summary['records']}")
    if not summary["next_commands"]:
        return
    echo("")
    echo(f"kept: {len(summary['checkpoints'])} LoRA checkpoints (adapters only) in {out / RUN_DIR}/checkpoint-*, "
         f"the monitor's settings in {out / CONFIG_FILE}. Next, on them (from this directory):")
    commands = summary["next_commands"]
    for what, command in zip(("audit the checkpoints (the monitor's measurement, offline)",
                              "what amplification over- and under-produces in the run's rollouts",
                              "serve the last adapter (OpenAI API at http://127.0.0.1:8000/v1)",
                              "and, while it serves, ask it from another terminal"), commands, strict=True):
        echo(f"  # {what}")
        echo(f"  {command}")
