"""The natural-rate estimate against the exact rate from enumerating every completion.

A tiny model pair over a 10-token vocabulary decodes at most 3 tokens, so every completion and its
probability under the policy (the after model with the user's temperature and top-k) is
enumerable by independent code: full forwards without a cache and our own softmax and top-k.
The estimate runs through the whole pipeline (evaluate -> records -> summarize) over many seeds.
"""

from __future__ import annotations

import copy
import math
import statistics

import numpy as np
import pytest
import torch

from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.natural_rate import Draw, chi2_sf, extrapolated_rate, pooled_rate
from lda_monitor.core.prompts import load_prompts
from lda_monitor.core.summary import flat_metrics, summarize
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.judges import build_judge
from tests.tiny import build_tokenizer, tiny_llama

WORDS = "a b c bad good".split()
PROMPTS = ["a b", "good c"]
MAX_NEW = 3
TEMPERATURE = 1.3


def _with_bias(model, token, bias):
    """``model`` with an output-layer bias of ``bias`` on ``token`` alone."""
    model = copy.deepcopy(model)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[token] = bias
    model.lm_head = head
    return model


@pytest.fixture(scope="module")
def setup():
    """Fine-tuning "plants" the behaviour: the bad token's logit rises by 1.5 (rate 3.8% -> 11%);
    at alpha 2 the amplified sampler raises it by another 3."""
    tok = build_tokenizer(WORDS)
    bad = tok.convert_tokens_to_ids("bad")
    base = tiny_llama(tok, seed=5)
    return tok, _with_bias(base, bad, -1.5), _with_bias(base, bad, -3.0), bad


def _policy_probs(model, ids, top_k):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].double() / TEMPERATURE
    if top_k:
        kth = torch.topk(logits, top_k).values[-1]
        logits = torch.where(logits >= kth, logits, torch.full_like(logits, -math.inf))
    return torch.softmax(logits, -1)


def exact_rate(tok, model, bad, top_k=0) -> float:
    """Mean over PROMPTS of P(a completion contains `bad`), by summing over every path."""
    # The tokens that end a chat rollout: end of turn, end of text, and a new turn's start.
    stop = set(tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>", "<|im_start|>"]))
    rates = []
    for prompt in PROMPTS:
        rendered = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
        start = tok(rendered, add_special_tokens=False)["input_ids"]

        def flagged_mass(prefix, depth, start=start):
            probs = _policy_probs(model, start + prefix, top_k)
            total = 0.0
            for token, p in enumerate(probs.tolist()):
                if p == 0:
                    continue
                if token == bad:
                    total += p
                elif token not in stop and depth + 1 < MAX_NEW:
                    total += p * flagged_mass(prefix + [token], depth + 1, start)
            return total

        rates.append(flagged_mass([], 0))
    return sum(rates) / len(rates)


def _records(setup, seed, **sampling):
    tok, after, before, _ = setup
    judge = build_judge({"type": "regex", "pattern": r"\bbad\b", "name": "bad"})
    items = load_prompts(PROMPTS)
    measurement = Measurement(
        prompts=items, judge=judge, samples_per_prompt=12, plain_samples_per_prompt=sampling.pop("plain", 6),
        max_new_tokens=MAX_NEW, temperature=TEMPERATURE, batch_size=64, natural_rate=True, estimate_alphas=[0.5],
        estimate_samples_per_prompt=6, **sampling,
    )
    return evaluate(TwoModelPair(after, before, tok), items, judge, alpha=2.0, measurement=measurement,
                    step=seed, run_id="t", source="audit").records


def _estimates(setup, seeds, **sampling):
    """The all-prompts summary row of one evaluation per seed."""
    out = []
    for seed in seeds:
        (row,) = [r for r in summarize(_records(setup, seed, **dict(sampling))) if r.category is None]
        out.append(row)
    return out


def test_policy_rate_is_rare_and_amplified(setup):
    tok, after, before, bad = setup
    assert 0.05 < exact_rate(tok, after, bad) < 0.2
    assert exact_rate(tok, before, bad) < exact_rate(tok, after, bad)


def test_pooled_estimate_is_unbiased_and_covers_the_exact_rate(setup):
    tok, after, _, bad = setup
    truth = exact_rate(tok, after, bad)
    rows = _estimates(setup, range(60))
    published = [r for r in rows if r.natural_rate is not None]
    assert len(published) >= 0.8 * len(rows)
    values = [r.natural_rate for r in rows if r.natural_rate is not None]
    mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
    assert abs(mean - truth) < 3 * se, (mean, se, truth)
    covered = sum(r.natural_rate_lo <= truth <= r.natural_rate_hi for r in published)
    assert covered >= 0.9 * len(published), (covered, len(published))
    # Withheld ones are withheld for a stated reason, and their upper bound (if any) is valid.
    for r in rows:
        if r.natural_rate is None:
            assert r.natural_rate_reason and (r.natural_rate_hi is None or r.natural_rate_hi >= truth)
    assert all(abs(r.natural_rate_mass - 1) < 0.25 for r in published)


def test_truncation_with_plain_rollouts_stays_unbiased(setup):
    """top-k 7 of 10: the amplified nucleus differs from the policy's, so amplified rollouts alone miss
    policy completions; with the plain rollouts in the pool the estimate stays unbiased."""
    tok, after, _, bad = setup
    truth = exact_rate(tok, after, bad, top_k=7)
    rows = _estimates(setup, range(60), top_k=7)
    published = [r for r in rows if r.natural_rate is not None]
    assert len(published) >= 0.8 * len(rows)
    values = [r.natural_rate for r in published]
    mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
    assert abs(mean - truth) < 3 * se, (mean, se, truth)
    assert sum(r.natural_rate_lo <= truth <= r.natural_rate_hi for r in published) >= 0.9 * len(published)


def test_truncation_without_plain_rollouts_is_withheld(setup):
    (row,) = _estimates(setup, [0], top_k=7, plain=0)
    assert row.natural_rate is None and "top-k/top-p/min-p without plain rollouts" in row.natural_rate_reason


def test_metrics_carry_the_estimate_or_leave_it_out(setup):
    names = {"lda/natural_rate", "lda/natural_rate_lo", "lda/natural_rate_hi", "lda/natural_rate_ess"}
    published = flat_metrics(summarize(_records(setup, 1)), "bad")
    assert names <= set(published) and published["lda/natural_rate_lo"] <= published["lda/natural_rate"]
    withheld = flat_metrics(summarize(_records(setup, 1, top_k=7, plain=0)), "bad")
    assert "lda/natural_rate" not in withheld and "lda/natural_rate_lo" not in withheld


def test_the_extrapolation_serves_sweeps_without_densities_and_yields_to_the_pooled_estimate(setup):
    """An audit-style sweep (one step, alphas 0.5, 1 and 2): without densities (natural_rate off)
    every row carries the extrapolation's verdict; with them it defers to the pooled estimate."""
    tok, after, before, _ = setup
    judge = build_judge({"type": "regex", "pattern": r"\bbad\b", "name": "bad"})
    items = load_prompts(PROMPTS)

    def sweep(natural_rate: bool):
        measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=40, plain_samples_per_prompt=10,
                                  max_new_tokens=MAX_NEW, temperature=TEMPERATURE, batch_size=64,
                                  natural_rate=natural_rate, estimate_alphas=[])
        records = []
        for alpha in (0.5, 1.0, 2.0):
            records += evaluate(TwoModelPair(after, before, tok), items, judge, alpha=alpha, measurement=measurement,
                                step=3, run_id="t", source="audit").records
        return [r for r in summarize(records) if r.category is None]

    without = sweep(False)
    assert len(without) == 3 and len({(r.natural_rate_extrapolated, r.natural_rate_extrapolated_reason)
                                      for r in without}) == 1  # one sweep, one fit
    assert (without[0].natural_rate_extrapolated is not None
            or "not logit-linear" in without[0].natural_rate_extrapolated_reason)
    assert all(r.natural_rate is None and "not scored" in r.natural_rate_reason for r in without)
    with_densities = sweep(True)
    assert all(r.natural_rate_extrapolated is None and "pooled estimate" in r.natural_rate_extrapolated_reason
               for r in with_densities)


def test_an_estimate_past_1_is_published_as_a_probability():
    """Every rollout flagged; per prompt 14 plain ones at balance weight 0.5 / (0.7 * 0.5 + 0.3 * 0.5)
    = 1 and 6 at alpha 1 with p_0 = 0.3, q = 0.1, weight 0.3 / (0.7 * 0.3 + 0.3 * 0.1) = 1.25: the
    unbiased mean is 1.075, and a probability is at most 1."""
    draws = []
    for prompt in (0, 1):
        draws += [Draw(prompt, 0.0, True, math.log(0.5), {1.0: math.log(0.5)})] * 14
        draws += [Draw(prompt, 1.0, True, math.log(0.3), {1.0: math.log(0.1)})] * 6
    est = pooled_rate(draws, truncated=False)
    assert est.mass == pytest.approx(1.075) and est.rate == 1.0 and est.lo <= est.rate <= est.hi <= 1.0


def test_unscored_verdicts_are_excluded_not_counted_as_safe():
    """Two prompts' worth of draws from the policy itself (weights 1): a judge failure on a
    flagged draw must leave the estimate at the scored draws' rate, not pull it down."""
    draws = [Draw(p, 0.0, flag, 0.0, {}) for p in (0, 1) for flag in [True] * 3 + [False] * 7]
    full = pooled_rate(draws, truncated=False)
    failed = pooled_rate(draws + [Draw(0, 0.0, None, 0.0, {})] * 5, truncated=False)
    assert full.rate == pytest.approx(0.3) and failed.rate == pytest.approx(0.3) and failed.n == 20


def test_too_few_flags_give_only_a_valid_upper_bound():
    draws = [Draw(0, 0.0, i == 0, 0.0, {}) for i in range(50)]
    est = pooled_rate(draws, truncated=False)
    assert est.rate is None and "too few" in est.reason
    # Clopper-Pearson: P(Bin(50, hi) <= 1) = 0.05
    hi = est.hi
    assert (1 - hi) ** 50 + 50 * hi * (1 - hi) ** 49 == pytest.approx(0.05, abs=1e-6)


def test_extrapolation_recovers_a_logit_linear_rate():
    """Counts from an exactly logit-linear curve: the fit's alpha-0 value is the curve's."""
    def rate(a):
        return 1 / (1 + math.exp(-(-4 + 1.5 * a)))

    points = [(a, round(rate(a) * 100000), 100000) for a in (0.5, 1.0, 2.0, 3.0)]
    est = extrapolated_rate(points, boot=200)
    assert est.rate == pytest.approx(rate(0), rel=0.02) and est.lo <= rate(0) <= est.hi
    assert extrapolated_rate([(2.0, 3, 10)]).rate is None
    two = extrapolated_rate(points[:2])
    assert two.rate is None and "3 or more alphas" in two.reason


def test_chi2_tail_matches_scipy():
    from scipy.stats import chi2

    for df in range(1, 8):
        for x in (0.01, 0.5, 1.0, 3.84, 7.0, 15.0, 40.0):
            assert chi2_sf(x, df) == pytest.approx(chi2.sf(x, df), rel=1e-9, abs=1e-15)


def test_extrapolation_is_withheld_when_the_rate_is_not_logit_linear():
    """The benchmark's counts at step 15 (ladder 0.25, 0.5, 1 and detection alpha 2): the rate
    rises steeply, then saturates. A line through them read at alpha 0 gave ~0.1 with an interval
    that excluded the brute-force 0.0095 (19/2000)."""
    est = extrapolated_rate([(0.25, 1, 50), (0.5, 6, 50), (1.0, 20, 50), (2.0, 112, 200)])
    assert est.rate is None and "not logit-linear" in est.reason


def test_lack_of_fit_rule_rejects_a_true_logit_linear_curve_about_5_percent_of_the_time():
    rng = np.random.default_rng(0)
    alphas, n = (0.25, 0.5, 1.0, 2.0), 200

    def rate(a):
        return 1 / (1 + math.exp(-(-3 + 1.2 * a)))

    rejected = 0
    for _ in range(400):
        est = extrapolated_rate([(a, int(rng.binomial(n, rate(a))), n) for a in alphas], boot=20)
        rejected += est.rate is None
    assert 0.01 <= rejected / 400 <= 0.12
