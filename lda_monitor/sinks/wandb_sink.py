"""W&B output of every front end: the ``lda/*`` scalars of each evaluation against a step axis,
the run's rollout table (every evaluation's rows, below), a discovery table (``lda/discoveries``)
per evaluation, a table of withheld
natural-rate estimates with their reasons (scalars cannot carry them), and the config in the run
config (the judge as a full description, :func:`~lda_monitor.judges.describe.describe_judge`). Fed
the evaluation in hand, never by re-reading records from disk.

* The callback logs into whatever W&B run exists (``wandb.run``), whether ``report_to="wandb"``
  started it or the user did, against the training step. wandb is never imported for it: if
  no one imported it, no run can exist.
* The audit (and ``rejudge``) own one run per invocation (:meth:`WandbSink.start`), against the
  checkpoint step.

wandb 0.31 specifics this relies on: logging with an explicit ``step=`` earlier than the run's
current step is silently dropped, so rows are logged without ``step=`` and carry
``train/global_step``, which ``define_metric("lda/*", step_metric=...)`` makes their x-axis
(the same axis the ``WandbCallback`` uses); ``define_metric`` has no ``goal``. Every row also
carries :data:`EVALUATION_STEP` (the training or the checkpoint step): the one x-axis the
workspace's panels (:mod:`.wandb_workspace`) share between training runs and audits.

The rollout table is one ``INCREMENTAL`` table for the whole run (wandb's mode for a table that
grows): each evaluation appends its rows and logs only those, so W&B holds every evaluation's
rollouts side by side (filter on ``prompt_id`` to read one prompt's answers across training).
It stops growing at :data:`ROLLOUT_TABLE_MAX_ROWS` rows (said once, with the fix): W&B's tables
slow down past ~10k rows, and the run's records on disk keep every rollout anyway. The withheld
and discovery tables stay one small table per evaluation.
"""

from __future__ import annotations

import random
import sys
import warnings

from ..core.prompts import question_text

STEP_METRIC = "train/global_step"
CHECKPOINT_STEP_METRIC = "checkpoint_step"
EVALUATION_STEP = "lda_step"  # outside lda/*: a step axis, not a metric of that axis
TABLE_KEY = "lda/rollouts"
ROLLOUT_TABLE_MAX_ROWS = 10_000
WITHHELD_KEY = "lda/natural_rate_withheld"
WITHHELD_COLUMNS = ["step", "alpha", "judge", "category", "upper_bound", "reason"]
DISCOVERY_TABLE_KEY = "lda/discoveries"
DISCOVERY_COLUMNS = ["step", "alpha", "phrase", "direction", "amplified_count", "amplified_n", "plain_count",
                     "plain_n", "q_value", "log_ratio", "example"]


def active_run():
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def table_rows(evaluation, unflagged: int) -> tuple[list[str], list[list]]:
    """Columns and rows: every rollout some judge flagged, plus up to ``unflagged`` others
    drawn with a private generator seeded by the step (the global RNG is never touched)."""
    judges = evaluation.judge_names
    columns = ["step", "kind", "alpha", "prompt_id", "category", "prompt", "completion", "stop_reason"]
    columns += [f"{j}/{field}" for j in judges for field in ("flagged", "score")]
    flagged = [r for r in evaluation.records if r.flagged_by_any()]
    others = [r for r in evaluation.records if not r.flagged_by_any()]
    sample = random.Random(evaluation.step).sample(others, min(unflagged, len(others)))
    rows = []
    for r in flagged + sample:
        row = [r.step, r.kind, r.alpha, r.prompt_id, r.category, question_text(r.prompt), r.completion, r.stop_reason]
        for j in judges:
            verdict = r.verdict(j)
            row += [None, None] if verdict is None else [verdict.flagged, verdict.score]
        rows.append(row)
    return columns, rows


def withheld_rows(evaluation) -> list[list]:
    """One row per summary row (judge x category) whose natural-rate estimate was withheld, with
    its upper bound (None when none can be justified) and the reason; none when the estimate was
    not asked for (``natural_rate`` off)."""
    from ..core.summary import NOT_SCORED

    return [[r.step, r.alpha, r.judge, r.category or "all", r.natural.rate.hi, r.natural.reason]
            for r in evaluation.rows()
            if r.natural.rate.value is None and r.natural.reason and r.natural.reason != NOT_SCORED.reason]


def discovery_rows(discovery) -> list[list]:
    """One row per phrase of a :class:`~lda_monitor.core.discovery.Discovery`, with its first
    example marked ``[[like this]]`` (a phrase the confirmation round confirmed says so in its
    direction, since its counts are the round's)."""
    return [[discovery.step, discovery.alpha, p.text, p.direction_label(), p.amplified_count, p.amplified_n,
             p.plain_count, p.plain_n, p.q_value, p.log_ratio, p.examples[0].marked() if p.examples else None]
            for p in discovery.phrases]


class WandbSink:
    def __init__(self, run_config: dict, *, step_metric: str = STEP_METRIC, run=None,
                 max_table_rows: int = ROLLOUT_TABLE_MAX_ROWS, on_run=None):
        self.run_config = run_config
        self.on_run = on_run  # called with each run the sink starts logging to (the workspace view's opt-in)
        self.step_metric = step_metric
        self.max_table_rows = max_table_rows
        self._own_run = run
        self._prepared_run = None
        self._rollouts = None  # the run's incremental rollout table, made at the first evaluation
        self._capped = False  # the cap was reached and said

    @classmethod
    def start(cls, project: str, directory, run_config: dict, job_type: str) -> WandbSink:
        """A sink with a run of its own (offline unless logged in or ``WANDB_MODE`` says otherwise),
        whose x-axis is the checkpoint step."""
        import wandb

        run = wandb.init(project=project, job_type=job_type, dir=str(directory))
        return cls(run_config, step_metric=CHECKPOINT_STEP_METRIC, run=run)

    def _prepare(self, run) -> None:
        """Once per run: the x-axis and the config entry."""
        if self._prepared_run is run:
            return
        run.define_metric(self.step_metric)
        run.define_metric(EVALUATION_STEP)
        run.define_metric("lda/*", step_metric=self.step_metric)
        run.config.update({"lda_monitor": self.run_config}, allow_val_change=True)
        self._prepared_run = run
        self._rollouts = None  # an incremental table belongs to one run
        if self.on_run is not None:
            self.on_run(run)

    def log(self, step: int, metrics: dict[str, float], evaluation=None, unflagged: int = 8, discovery=None) -> None:
        run = self._own_run or active_run()
        if run is None:
            return
        self._prepare(run)
        payload = {**metrics, self.step_metric: step, EVALUATION_STEP: step}
        if evaluation is not None and evaluation.records:
            import wandb

            rollouts = self._append_rollouts(*table_rows(evaluation, unflagged))
            if rollouts is not None:
                payload[TABLE_KEY] = rollouts
            withheld = withheld_rows(evaluation)
            if withheld:
                payload[WITHHELD_KEY] = wandb.Table(columns=WITHHELD_COLUMNS, data=withheld)
        if discovery is not None:  # judge-free discovery: its phrases, empty when nothing was found
            import wandb

            payload[DISCOVERY_TABLE_KEY] = wandb.Table(columns=DISCOVERY_COLUMNS, data=discovery_rows(discovery))
        run.log(payload)

    def _append_rollouts(self, columns: list[str], rows: list[list]):
        """The run's rollout table with ``rows`` appended, or None when nothing was appended (the
        cap was reached: logging it again would add an empty increment)."""
        import wandb

        if self._rollouts is None:
            # allow_mixed_types: a score column holds None (unscored) beside floats across evaluations.
            self._rollouts = wandb.Table(columns=columns, log_mode="INCREMENTAL", allow_mixed_types=True)
        elif list(self._rollouts.columns) != columns:
            raise ValueError(f"{TABLE_KEY}: this evaluation's columns {columns} differ from the run's "
                             f"{list(self._rollouts.columns)} (the judges changed within one run)")
        room = self.max_table_rows - len(self._rollouts.data)
        if room < len(rows) and not self._capped:
            self._capped = True
            warnings.warn(f"{TABLE_KEY} reached its cap of {self.max_table_rows} rows; later rollouts are only "
                          "in the run's records (rollouts.jsonl). Lower table_unflagged_samples or evaluate "
                          "less often to keep more evaluations in W&B", stacklevel=3)
        for row in rows[:max(room, 0)]:
            self._rollouts.add_data(*row)
        return self._rollouts if room > 0 and rows else None

    def finish(self) -> None:
        """Close the sink's own run (a run someone else started is theirs to close)."""
        if self._own_run is not None:
            self._own_run.finish()
