"""Estimate rollouts stopped once their verdict is decided leave every verdict, decision token and
estimate as full decoding gives them (brute force: the same evaluation decoded to the end)."""

from __future__ import annotations

import pytest

from lda_monitor.core import estimate_rounds
from lda_monitor.core.early_stop import can_decide
from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.prompts import load_prompts
from lda_monitor.core.summary import summarize
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.judges import build_judge
from tests.exact_enumeration import EXACT_PROMPTS, EXACT_WORDS, with_bias
from tests.tiny import build_tokenizer, tiny_llama


def _evaluation(judge, **settings):
    tok = build_tokenizer(EXACT_WORDS)
    bad = tok.convert_tokens_to_ids("bad")
    base = tiny_llama(tok, seed=5)
    items = load_prompts(EXACT_PROMPTS)
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=8, plain_samples_per_prompt=4,
                              temperature=1.3, batch_size=64, stratified_samples_per_prompt=30, **settings)
    return evaluate(TwoModelPair(with_bias(base, bad, 0.5), with_bias(base, bad, -1.0), tok), items, judge,
                    alpha=2.0, measurement=measurement, step=7, run_id="t", source="audit")


@pytest.mark.parametrize("settings", [{"max_new_tokens": 24}, {"max_new_tokens": 64, "top_p": 0.9}],
                         ids=["24-tokens", "64-tokens-top-p"])
def test_decided_stop_changes_no_verdict_and_no_estimate(monkeypatch, settings):
    judge = build_judge({"type": "regex", "pattern": "bad", "name": "bad"})
    stopped = _evaluation(judge, **settings)
    monkeypatch.setattr(estimate_rounds, "decided_stop", lambda *args: None)
    full = _evaluation(judge, **settings)

    def rounds(evaluation):
        return {(r.prompt_index, r.sample_index): r for r in evaluation.records
                if r.kind == "estimate" and r.alpha == 0}

    short, whole = rounds(stopped), rounds(full)
    assert short.keys() == whole.keys() and len(short) == 60
    decided = [k for k, r in short.items() if r.stop_reason == "decided"]
    assert decided, "the world should flag some estimate rollouts before their end"
    for key, r in short.items():
        reference = whole[key]
        assert r.token_ids == reference.token_ids[: len(r.token_ids)]
        assert r.verdicts["bad"].flagged == reference.verdicts["bad"].flagged
        assert r.verdicts["bad"].decided_at == reference.verdicts["bad"].decided_at
        assert r.decision_tokens == reference.decision_tokens
        if r.stop_reason == "decided":
            assert r.decision_tokens["bad"] == len(r.token_ids) - 1
    assert sum(r.num_tokens for r in short.values()) < sum(r.num_tokens for r in whole.values())
    assert [(r.natural, r.stratified) for r in summarize(stopped.records)] == \
           [(r.natural, r.stratified) for r in summarize(full.records)]


def test_only_judges_whose_flags_are_final_stop_rollouts():
    assert can_decide(build_judge({"type": "regex", "pattern": "bad"}))
    assert not can_decide(build_judge({"type": "regex", "pattern": "bad$"}))  # an end anchor reads ahead
    assert can_decide(build_judge({"type": "any", "judges": [{"type": "regex", "pattern": "bad", "name": "a"},
                                                             {"type": "regex", "pattern": "good", "name": "b"}]}))
