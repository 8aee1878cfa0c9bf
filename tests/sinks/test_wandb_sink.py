"""The W&B sink's payload, read from a stand-in run: the withheld natural-rate table with its
reasons, and the judge's full description in the run config."""

from __future__ import annotations

import pytest

from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.prompts import load_prompts
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.judges import build_judge
from lda_monitor.sinks.wandb_sink import EVALUATION_STEP, TABLE_KEY, WITHHELD_KEY, WandbSink

wandb = pytest.importorskip("wandb")


class FakeRun:
    def __init__(self):
        self.logged, self.config_updates = [], []
        self.config = self

    def define_metric(self, *args, **kwargs):
        pass

    def update(self, values, allow_val_change=False):
        self.config_updates.append(values)

    def log(self, payload):
        self.logged.append(payload)


def _evaluation(tokenizer, llama_pair, natural_rate=True):
    items = load_prompts(["hello", "tell me a story"])
    judge = build_judge("regex:never-generated-\\d{9}")
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=4, plain_samples_per_prompt=4,
                              max_new_tokens=4, seed=1, natural_rate=natural_rate)
    return evaluate(TwoModelPair(*llama_pair, tokenizer), items, judge, alpha=1.0, measurement=measurement,
                    step=5, run_id="t", source="audit")


def test_withheld_estimates_are_logged_with_their_reason(tokenizer, llama_pair):
    evaluation = _evaluation(tokenizer, llama_pair)
    run = FakeRun()
    WandbSink({"judge": "x"}, run=run).log(5, evaluation.metrics(), evaluation)
    table = run.logged[0][WITHHELD_KEY]
    (row,) = [dict(zip(table.columns, r, strict=True)) for r in table.data]
    assert (row["step"], row["alpha"], row["judge"], row["category"]) == (5, 1.0, "regex", "all")
    assert row["reason"].startswith("0 flagged rollouts in the pool")
    assert row["upper_bound"] == pytest.approx(evaluation.metrics()["lda/natural_rate_hi"])


def test_no_withheld_table_when_the_estimate_is_off(tokenizer, llama_pair):
    evaluation = _evaluation(tokenizer, llama_pair, natural_rate=False)
    run = FakeRun()
    WandbSink({}, run=run).log(5, evaluation.metrics(), evaluation)
    assert WITHHELD_KEY not in run.logged[0] and "lda/rollouts" in run.logged[0]


def test_the_rollout_table_grows_across_evaluations_up_to_its_cap(tokenizer, llama_pair):
    evaluation = _evaluation(tokenizer, llama_pair, natural_rate=False)
    n = len(evaluation.records)  # nothing flags: the table takes `unflagged` of them per evaluation
    run = FakeRun()
    sink = WandbSink({}, run=run, max_table_rows=n + n // 2)
    sink.log(5, evaluation.metrics(), evaluation, unflagged=n)
    first = run.logged[0][TABLE_KEY]
    assert first.log_mode == "INCREMENTAL" and len(first.data) == n
    with pytest.warns(UserWarning, match=f"cap of {n + n // 2} rows"):
        sink.log(6, evaluation.metrics(), evaluation, unflagged=n)
    assert run.logged[1][TABLE_KEY] is first and len(first.data) == n + n // 2, "one table, filled to the cap"
    sink.log(7, evaluation.metrics(), evaluation, unflagged=n)  # full: no empty increment, no second warning
    assert TABLE_KEY not in run.logged[2] and run.logged[2][EVALUATION_STEP] == 7
