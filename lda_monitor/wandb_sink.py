"""W&B output of the monitor: scalars on the training step, a rollout table per evaluation, and
the monitor config in the run config.

Active whenever a W&B run exists (``wandb.run``), whether ``report_to="wandb"`` started it or
the user did. wandb is never imported here: if no one imported it, no run can exist.

wandb 0.31 specifics this relies on: logging with an explicit ``step=`` earlier than the run's
current step is silently dropped, so rows are logged without ``step=`` and carry
``train/global_step``, which ``define_metric("lda/*", step_metric=...)`` makes their x-axis
(the same axis the ``WandbCallback`` uses); ``define_metric`` has no ``goal``; a ``Table`` is
immutable, so each evaluation logs a new one.
"""

from __future__ import annotations

import random
import sys

from .evaluation import judge_question

STEP_METRIC = "train/global_step"
TABLE_KEY = "lda/rollouts"


def active_run():
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def table_rows(evaluation, unflagged: int) -> tuple[list[str], list[list]]:
    """Columns and rows: every rollout some judge flagged, plus up to ``unflagged`` others
    drawn with a private generator seeded by the step (the global RNG is never touched)."""
    judges = evaluation.judge_names
    columns = ["step", "kind", "alpha", "prompt_id", "category", "prompt", "completion", "stop_reason"]
    columns += [f"{j}/{field}" for j in judges for field in ("flagged", "score")]
    flagged = [r for r in evaluation.records if any(v.get("flagged") for v in r.verdicts.values())]
    others = [r for r in evaluation.records if not any(v.get("flagged") for v in r.verdicts.values())]
    sample = random.Random(evaluation.step).sample(others, min(unflagged, len(others)))
    rows = []
    for r in flagged + sample:
        row = [r.step, r.kind, r.alpha, r.prompt_id, r.category, judge_question(r.prompt), r.completion, r.stop_reason]
        for j in judges:
            verdict = r.verdicts.get(j, {})
            row += [verdict.get("flagged"), verdict.get("score")]
        rows.append(row)
    return columns, rows


class WandbSink:
    def __init__(self, run_config: dict):
        self.run_config = run_config
        self._prepared_run = None

    def _prepare(self, run) -> None:
        """Once per run: the x-axis and the monitor config entry."""
        if self._prepared_run is run:
            return
        run.define_metric(STEP_METRIC)
        run.define_metric("lda/*", step_metric=STEP_METRIC)
        run.config.update({"lda_monitor": self.run_config}, allow_val_change=True)
        self._prepared_run = run

    def log(self, step: int, metrics: dict[str, float], evaluation=None, unflagged: int = 8) -> None:
        run = active_run()
        if run is None:
            return
        self._prepare(run)
        payload = {**metrics, STEP_METRIC: step}
        if evaluation is not None and evaluation.records:
            import wandb

            columns, rows = table_rows(evaluation, unflagged)
            payload[TABLE_KEY] = wandb.Table(columns=columns, data=rows)
        run.log(payload)
