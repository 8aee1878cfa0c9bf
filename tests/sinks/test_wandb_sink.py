"""The W&B sink's payload, read from a stand-in run: the withheld natural-rate table with its
reasons, and the judge's full description in the run config."""

from __future__ import annotations

import pytest

from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.prompts import load_prompts
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.judges import build_judge
from lda_monitor.sinks.wandb_sink import WITHHELD_KEY, WandbSink

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
