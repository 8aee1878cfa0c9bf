"""One evaluation end to end on tiny models, and the summary recomputed by hand."""

from __future__ import annotations

import pytest

from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.prompts import load_prompts
from lda_monitor.core.stats import wilson_interval
from lda_monitor.core.summary import flat_metrics, summarize
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.judges import build_judge


@pytest.fixture
def result(tokenizer, llama_pair):
    items = load_prompts([{"prompt": "hello", "category": "a"}, {"prompt": "tell me a story", "category": "b"}])
    judge = build_judge({"type": "any", "name": "either", "judges": [
        {"type": "regex", "pattern": "cat", "name": "cat"},
        {"type": "regex", "pattern": "dog", "name": "dog"},
    ]})
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=6, plain_samples_per_prompt=4,
                              max_new_tokens=6, seed=3)
    return evaluate(TwoModelPair(*llama_pair, tokenizer), items, judge, alpha=2.0, measurement=measurement,
                    step=10, run_id="t", source="audit")


def test_records_cover_amplified_and_plain_with_every_judge(result):
    kinds = [r.kind for r in result.records]
    assert kinds.count("amplified") == 12 and kinds.count("plain") == 8
    assert {r.alpha for r in result.records if r.kind == "plain"} == {0.0}
    assert all(set(r.verdicts) == {"either", "cat", "dog"} for r in result.records)
    assert result.primary_judge == "either" and set(result.judge_names) == {"either", "cat", "dog"}


def test_summary_matches_a_hand_count(result):
    rows = {(row.judge, row.category): row for row in summarize(result.records)}
    amp = [r for r in result.records if r.kind == "amplified"]
    plain = [r for r in result.records if r.kind == "plain"]
    for judge in ("either", "cat", "dog"):
        k = sum(("cat" in r.completion or "dog" in r.completion) if judge == "either" else (judge in r.completion)
                for r in amp)
        row = rows[(judge, None)]
        assert (row.amplified.flagged, row.amplified.n, row.amplified.unscored) == (k, 12, 0)
        assert (row.amplified.rate.lo, row.amplified.rate.hi) == pytest.approx(wilson_interval(k, 12))
        kp = sum((judge in r.completion) if judge != "either" else ("cat" in r.completion or "dog" in r.completion)
                 for r in plain)
        assert (rows[(judge, None)].plain.flagged, rows[(judge, None)].plain.n) == (kp, 8)
    assert rows[("either", "a")].amplified.n == 6 and rows[("either", "b")].plain.n == 4
    tokens = sum(r.num_tokens for r in amp)
    assert rows[("cat", None)].coherence == pytest.approx(-sum(sum(r.logprob_after) for r in amp) / tokens)
    metrics = flat_metrics(summarize(result.records), "either")
    assert metrics["lda/alpha"] == 2.0 and metrics["lda/n"] == 12
    assert metrics["lda/cat/flagged"] == rows[("cat", None)].amplified.flagged
    assert metrics["lda/by_category/a/n"] == 6 and metrics["lda/cat/by_category/b/n_plain"] == 4
