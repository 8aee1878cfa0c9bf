"""``LDAMonitorCallback``: amplified rollouts while a model trains.

Add it to a Hugging Face ``Trainer`` or a TRL trainer (SFT, DPO, GRPO)::

    trainer = SFTTrainer(..., callbacks=[LDAMonitorCallback(prompts=[...], judge="regex:...")])

It snapshots the reference at train begin (see :mod:`lda_monitor.reference`), then at step 0,
every ``every_n_steps`` and at the end samples amplified rollouts at the scheduled alpha plus a
plain (alpha 0) control, judges them, writes every rollout to
``output_dir/lda_monitor/rollouts.v1.jsonl`` and logs metrics (see :mod:`lda_monitor.summary`):

* ``lda/flag_rate``, ``lda/flag_rate_lo``, ``lda/flag_rate_hi``, ``lda/flagged``, ``lda/n``,
  ``lda/unscored``: amplified rollouts, primary judge, Wilson 95% interval;
* the same with ``_plain`` for the control; ``lda/amplification`` (amplified / plain, absent
  when the plain rate is 0) and ``lda/amplification_lo``;
* ``lda/natural_rate_estimate``, ``lda/natural_rate_ess``, ``lda/natural_rate_reliable``:
  importance-weighted estimate of the policy's own rate from the amplified rollouts;
* ``lda/alpha``, ``lda/kl_amp_after``, ``lda/coherence``, ``lda/coherence_plain``;
* ``lda/<judge>/...`` for every other judge of a composition, ``.../by_category/<cat>/...``;
* ``lda/eval_seconds``, ``lda/tokens_per_second``, ``lda/monitor_time_share``, ``lda/errors``,
  ``lda/alert`` (guardrail).

It never perturbs training: the engine samples from private random streams in eval mode under
``no_grad`` and restores train mode; any failure becomes a warning and ``lda/errors`` (unless
``fail_on_error``); its state is checkpointed and restored in place on resume.
"""

from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import fields

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .evaluation import EvaluationPlan, evaluate, probe_kl
from .judges import build_judge
from .monitor_config import MonitorConfig
from .prompts import load_prompts
from .records import RecordWriter, drop_records_after, records_file_name
from .reference import Reference
from .sampling import SamplingConfig
from .schedules import parse_schedule
from .summary import flat_metrics, summarize
from .trainer_logging import MetricEmitter, find_callback_handler

PROBE_PROMPTS = 4


class LDAMonitorCallback(TrainerCallback, ExportableState):
    def __init__(self, config: MonitorConfig | None = None, **options):
        self.config = config if config is not None else MonitorConfig(**options)
        c = self.config
        if c.prompts is None or c.judge is None:
            raise ValueError("LDAMonitorCallback needs prompts=... and judge=...")
        self.items = load_prompts(c.prompts, column=c.prompt_column, category_column=c.category_column)
        self.judge = build_judge(c.judge)
        self.schedule = parse_schedule(c.alpha)
        self.plan = EvaluationPlan(
            samples_per_prompt=c.samples_per_prompt,
            plain_samples_per_prompt=c.plain_samples_per_prompt,
            sampling=SamplingConfig(
                max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p,
                top_k=c.top_k, min_p=c.min_p, seed=c.seed, system_prompt=c.system_prompt,
                chat_template=c.chat_template, batch_size=c.batch_size,
            ),
        )
        self.run_id = uuid.uuid4().hex[:12]
        self.history: list[dict] = []  # one entry per evaluation: step + metrics
        self.errors = 0
        self.monitor_seconds = 0.0
        self.reference: Reference | None = None
        self._emitter: MetricEmitter | None = None
        self._writer: RecordWriter | None = None
        self._train_start = None

    @classmethod
    def from_config(cls, path, **overrides) -> LDAMonitorCallback:
        """Build from a YAML file of :class:`MonitorConfig` keys (``overrides`` win)."""
        return cls(MonitorConfig.from_yaml(path, **overrides))

    # ----- checkpointed state ---------------------------------------------------------------
    def state(self) -> dict:
        args = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        args = {k: v for k, v in args.items() if isinstance(v, str | int | float | bool | type(None))}
        return {
            "args": args,
            "attributes": {
                "run_id": self.run_id,
                "history": self.history,
                "errors": self.errors,
                "monitor_seconds": self.monitor_seconds,
                "schedule": self.schedule.state_dict(),
            },
        }

    def _restore(self, state) -> None:
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[-1] if saved else None
        if not saved or "attributes" not in saved:
            return
        attrs = saved["attributes"]
        self.run_id = attrs.get("run_id", self.run_id)
        self.history = [h for h in attrs.get("history", []) if h["step"] <= state.global_step]
        self.errors = attrs.get("errors", 0)
        self.monitor_seconds = attrs.get("monitor_seconds", 0.0)
        if "schedule" in attrs:
            self.schedule.load_state_dict(attrs["schedule"])

    # ----- trainer events -------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._emitter = MetricEmitter(self, find_callback_handler())
        self._restore(state)
        self._train_start = time.perf_counter() - self.monitor_seconds
        self.reference = Reference.choose(
            model, self.config.reference, offload=self.config.reference_offload,
            dtype=self.config.reference_dtype, strategy=self.config.peft_strategy,
        )
        if state.is_world_process_zero:
            from pathlib import Path

            path = Path(args.output_dir) / "lda_monitor" / records_file_name()
            # Records past the resumed step belong to a trajectory the resume rolled back.
            drop_records_after(path, state.global_step)
            self._writer = RecordWriter(path)
            self._emitter.config({**self.config.public_dict(), "reference": self.reference.description,
                                  "judge": self.judge.name})
            print(f"[lda-monitor] reference: {self.reference.description}")
        if self.config.trigger == "steps":
            self._maybe_evaluate(args, state, control, model, processing_class, **kwargs)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.config.trigger == "steps" and state.global_step % self.config.every_n_steps == 0:
            self._maybe_evaluate(args, state, control, model, processing_class, **kwargs)

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.config.trigger == "evaluate":
            self._maybe_evaluate(args, state, control, model, processing_class, **kwargs)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._maybe_evaluate(args, state, control, model, processing_class, **kwargs)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ----- one evaluation -------------------------------------------------------------------
    def _maybe_evaluate(self, args, state, control, model, tokenizer, **kwargs):
        step = state.global_step
        if any(h["step"] == step for h in self.history):
            return
        start = time.perf_counter()
        try:
            metrics = self._evaluate(step, state, model, tokenizer)
        except Exception as exc:
            if self.config.fail_on_error:
                raise
            self.errors += 1
            warnings.warn(f"lda-monitor: evaluation at step {step} failed ({type(exc).__name__}: {exc}); "
                          "training continues", stacklevel=2)
            metrics = {"lda/errors": float(self.errors)}
        elapsed = time.perf_counter() - start
        self.monitor_seconds += elapsed
        total = max(time.perf_counter() - self._train_start, 1e-9)
        metrics.update({"lda/eval_seconds": elapsed, "lda/monitor_time_share": self.monitor_seconds / total,
                        "lda/errors": float(self.errors)})
        if self.monitor_seconds / total > self.config.warn_time_share and step > 0:
            warnings.warn(f"lda-monitor used {self.monitor_seconds / total:.0%} of training wall time "
                          "so far; raise every_n_steps or lower samples_per_prompt", stacklevel=2)
        self._guardrail(metrics, control)
        self.history.append({"step": step, "metrics": metrics})
        self._emitter.emit(args, state, control, metrics, model=model, processing_class=tokenizer, **kwargs)

    def _evaluate(self, step, state, model, tokenizer) -> dict[str, float]:
        with self.reference.pair(model, tokenizer) as pair:
            if self.schedule.is_adaptive:
                kl_at = probe_kl(pair, self.items[:PROBE_PROMPTS], self.plan, step=step)
                alpha = self.schedule.choose(step, state.max_steps or None, kl_at)
            else:
                alpha = self.schedule.alpha_at(step, state.max_steps or None)
            self.schedule.record(step, alpha)
            deadline = time.perf_counter() + self.config.max_eval_seconds if self.config.max_eval_seconds else None
            result = evaluate(pair, self.items, self.judge, alpha=alpha, plan=self.plan, step=step,
                              run_id=self.run_id, source="callback", deadline=deadline)
        if self._writer is not None:
            self._writer.write(result.records)
        rows = summarize(result.records)
        metrics = flat_metrics(rows, result.primary_judge)
        metrics["lda/tokens_per_second"] = result.tokens / max(result.seconds, 1e-9)
        self._table(state, step, result)
        return metrics

    def _table(self, state, step, result) -> None:
        judges = result.judge_names
        columns = ["step", "kind", "alpha", "prompt", "completion"] + [f"{j}/{f}" for j in judges for f in ("flagged", "score")]
        primary = result.primary_judge
        flagged = [r for r in result.records if r.verdicts[primary]["flagged"]]
        others = [r for r in result.records if not r.verdicts[primary]["flagged"]][: self.config.table_unflagged_samples]
        rows = [
            [step, r.kind, r.alpha, str(r.prompt), r.completion]
            + [r.verdicts[j][f] for j in judges for f in ("flagged", "score")]
            for r in flagged + others
        ]
        self._emitter.table(state, "lda/rollouts", columns, rows)

    def _guardrail(self, metrics, control) -> None:
        threshold = self.config.stop_on_flag_rate_lower_bound
        if threshold is None or "lda/flag_rate_lo" not in metrics:
            return
        alert = metrics["lda/flag_rate_lo"] > threshold
        metrics["lda/alert"] = float(alert)
        if alert:
            warnings.warn(f"lda-monitor guardrail: amplified flag rate lower bound "
                          f"{metrics['lda/flag_rate_lo']:.3f} > {threshold}", stacklevel=3)
            if self.config.guardrail_action == "stop":
                control.should_training_stop = True
