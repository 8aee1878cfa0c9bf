"""``lda/coherence`` stays finite under top-p: it is the NLL under the untruncated policy at the
sampling temperature, checked against a brute-force cache-free forward."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.prompts import load_prompts
from lda_monitor.core.records import RolloutRecord
from lda_monitor.core.stats import coherence, policy_logprobs
from lda_monitor.core.summary import summarize
from lda_monitor.engine.chat import encode_rendered, render_prompt
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.judges import build_judge
from tests.tiny import tiny_llama

TEMPERATURE = 0.8


def _brute_force_policy_logprob(model, tokenizer, prompt, completion_ids, t):
    ids = encode_rendered(tokenizer, render_prompt(tokenizer, prompt)) + completion_ids[:t]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].double()
    return float(torch.log_softmax(logits / TEMPERATURE, -1)[completion_ids[t]])


@pytest.fixture(scope="module")
def finetuned_pair(tokenizer):
    """(after, before) where before is after with a perturbed output layer, like a fine-tune:
    amplifying their small difference picks tokens outside the after model's top-p nucleus."""
    after = tiny_llama(tokenizer, seed=1)
    before = copy.deepcopy(after)
    noise = torch.randn(before.lm_head.weight.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before.lm_head.weight.add_(0.1 * noise)
    return after, before


def test_top_p_with_large_alpha_gives_finite_coherence_equal_to_brute_force(tokenizer, finetuned_pair):
    after, before = finetuned_pair
    items = load_prompts([{"prompt": "hello"}, {"prompt": "tell me a story about the cat"}])
    judge = build_judge({"type": "regex", "pattern": "cat", "name": "cat"})
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=6, plain_samples_per_prompt=2,
                              max_new_tokens=8, seed=3, temperature=TEMPERATURE, top_p=0.5)
    result = evaluate(TwoModelPair(after, before, tokenizer), items, judge, alpha=4.0, measurement=measurement,
                      step=1, run_id="t", source="audit")
    amp = [r for r in result.records if r.kind == "amplified"]
    # The bug this guards against: tokens outside the policy's nucleus have -inf under logprob_after.
    assert any(x == -math.inf for r in amp for x in r.logprob_after)
    nll, tokens = 0.0, 0
    for r in amp:
        for t in range(r.num_tokens):
            want = _brute_force_policy_logprob(after, tokenizer, r.prompt, r.token_ids, t)
            assert r.logprob_policy[t] == pytest.approx(want, abs=2e-4)
            nll -= want
            tokens += 1
    row = next(row for row in summarize(result.records) if row.category is None)
    assert math.isfinite(row.coherence)
    assert row.coherence == pytest.approx(nll / tokens, abs=1e-4)


def _record(logprob_after, logprob_policy=None) -> RolloutRecord:
    return RolloutRecord(run_id="r", source="audit", step=0, kind="amplified", alpha=1.0, seed=0, prompt_index=0,
                         sample_index=0, prompt="p", rendered_prompt="p", completion="c", token_ids=[1] * 3,
                         stop_reason="eos", num_tokens=3, logprob_sampled=[-1.0] * 3, logprob_after=logprob_after,
                         logprob_before=None, kl_amp_after=0.0, verdicts={}, logprob_policy=logprob_policy)


def test_old_records_fall_back_to_logprob_after_without_inf():
    old = [_record([-1.0, -math.inf, -2.0]), _record([-3.0, -math.inf, -math.inf])]
    # Tokens outside the nucleus are left out of numerator and count: (1 + 2 + 3) / 3.
    assert coherence([policy_logprobs(r) for r in old]) == pytest.approx(2.0)
    new = _record([-1.0, -math.inf, -2.0], logprob_policy=[-1.5, -9.0, -2.5])
    assert coherence([policy_logprobs(new)]) == pytest.approx(13.0 / 3)
    older = {k: v for k, v in new.to_dict().items() if k != "logprob_policy"}
    assert RolloutRecord.from_dict(older).logprob_policy is None
