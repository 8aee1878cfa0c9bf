"""The natural-rate estimate against the exact rate from enumerating every completion.

A tiny model pair over a 10-token vocabulary decodes at most 3 tokens, so every completion and its
probability under the policy (the after model with the user's temperature and top-k) is
enumerable by independent code: full forwards without a cache and our own softmax and top-k.
The estimate runs through the whole pipeline (evaluate -> records -> summarize) over many seeds.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import LADDER_ALPHAS, Measurement
from lda_monitor.core.natural_rate import Draw, extrapolated_rate, pooled_rate
from lda_monitor.core.prompts import load_prompts
from lda_monitor.core.summary import flat_metrics, summarize
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.judges import build_judge
from tests.exact_enumeration import EXACT_MAX_NEW as MAX_NEW
from tests.exact_enumeration import EXACT_PROMPTS as PROMPTS
from tests.exact_enumeration import EXACT_TEMPERATURE as TEMPERATURE
from tests.exact_enumeration import EXACT_WORDS as WORDS
from tests.exact_enumeration import exact_rate
from tests.exact_enumeration import policy_probs as _policy_probs
from tests.exact_enumeration import with_bias as _with_bias
from tests.tiny import build_tokenizer, tiny_llama


@pytest.fixture(scope="module")
def setup():
    """Fine-tuning "plants" the behaviour: the bad token's logit rises by 1.5 (rate 3.8% -> 11%);
    at alpha 2 the amplified sampler raises it by another 3."""
    tok = build_tokenizer(WORDS)
    bad = tok.convert_tokens_to_ids("bad")
    base = tiny_llama(tok, seed=5)
    return tok, _with_bias(base, bad, -1.5), _with_bias(base, bad, -3.0), bad


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
    published = [r for r in rows if r.natural.rate.value is not None]
    assert len(published) >= 0.8 * len(rows)
    values = [r.natural.rate.value for r in rows if r.natural.rate.value is not None]
    mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
    assert abs(mean - truth) < 3 * se, (mean, se, truth)
    covered = sum(r.natural.rate.lo <= truth <= r.natural.rate.hi for r in published)
    assert covered >= 0.9 * len(published), (covered, len(published))
    # Withheld ones are withheld for a stated reason, and their upper bound (if any) is valid.
    for r in rows:
        if r.natural.rate.value is None:
            assert r.natural.reason and (r.natural.rate.hi is None or r.natural.rate.hi >= truth)
    assert all(abs(r.natural.mass - 1) < 0.25 for r in published)


@pytest.mark.parametrize("truncation", [{"top_k": 7}, {"top_p": 0.95}], ids=["top-k", "top-p"])
def test_truncation_with_plain_rollouts_stays_unbiased(setup, truncation):
    """top-k 7 of 10, or a nucleus of 0.95: the amplified nucleus differs from the policy's, so amplified
    rollouts alone miss policy completions; with the plain rollouts in the pool the estimate stays
    unbiased (and the truncation-only share rule does not withhold it where it is right)."""
    tok, after, _, bad = setup
    truth = exact_rate(tok, after, bad, **truncation)
    rows = _estimates(setup, range(60), **truncation)
    published = [r for r in rows if r.natural.rate.value is not None]
    assert len(published) >= 0.8 * len(rows)
    values = [r.natural.rate.value for r in published]
    mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
    assert abs(mean - truth) < 3 * se, (mean, se, truth)
    assert sum(r.natural.rate.lo <= truth <= r.natural.rate.hi for r in published) >= 0.9 * len(published)


def test_truncation_without_plain_rollouts_is_withheld(setup):
    (row,) = _estimates(setup, [0], top_k=7, plain=0)
    assert row.natural.rate.value is None and "top-k/top-p/min-p without plain rollouts" in row.natural.reason


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
    assert len(without) == 3 and len({(r.extrapolated.rate.value, r.extrapolated.reason)
                                      for r in without}) == 1  # one sweep, one fit
    assert (without[0].extrapolated.rate.value is not None
            or "not logit-linear" in without[0].extrapolated.reason)
    assert all(r.natural.rate.value is None and "not scored" in r.natural.reason for r in without)
    with_densities = sweep(True)
    assert all(r.extrapolated.rate.value is None and "pooled estimate" in r.extrapolated.reason
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


# --- Long answers: the verdict is decided in the first two tokens of a 24-token rollout. ---------

LONG_PROMPTS = ["a b", "good c", "c a"]
EARLY = r"\A(\w+ )?bad"  # "bad" as the first or second word: decided within two tokens


@pytest.fixture(scope="module")
def early_pair():
    """The policy says "bad" first or second at about 2.5% (enumerated below); the before model
    differs from it on every token (noise on its output bias), so each token after the decision
    multiplies a whole-sequence weight by a ratio that says nothing about the verdict. Special
    tokens (the end of turn among them) are all but ruled out, so rollouts run their full length."""
    tok = build_tokenizer(WORDS)
    bad = tok.convert_tokens_to_ids("bad")
    base = tiny_llama(tok, seed=5)
    after, before = _with_bias(base, bad, -3.35), _with_bias(base, bad, -4.85)
    noise = torch.randn(len(tok), generator=torch.Generator().manual_seed(0))
    noise[bad] = 0
    specials = tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"])
    with torch.no_grad():
        before.lm_head.bias += noise
        for model in (after, before):
            model.lm_head.bias[specials] -= 30.0
    return tok, after, before, bad


def early_exact_rate(tok, model, bad) -> float:
    """P(the first token is "bad", or a word then "bad"), mean over the prompts: the judge's flag
    needs a word token first ("\\n" and special tokens do not match \\w)."""
    words = tok.convert_tokens_to_ids([w for w in WORDS if w != "bad"])
    rates = []
    for prompt in LONG_PROMPTS:
        rendered = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
        start = tok(rendered, add_special_tokens=False)["input_ids"]
        first = _policy_probs(model, start, 0)
        rates.append(first[bad].item() + sum(first[w].item() * _policy_probs(model, start + [w], 0)[bad].item()
                                             for w in words))
    return sum(rates) / len(rates)


def _early_rows(early_pair, max_new, seeds):
    """Per seed: the all-prompts row, and the row from the same records with positions dropped
    (whole-sequence weights, as for a judge that reports none)."""
    tok, after, before, _ = early_pair
    judge = build_judge({"type": "regex", "pattern": EARLY, "name": "bad", "reasoning": None})
    items = load_prompts(LONG_PROMPTS)
    # The ladder this test was made with (no longer the default): 15 rollouts per prompt at each alpha.
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=60, plain_samples_per_prompt=5,
                              max_new_tokens=max_new, temperature=TEMPERATURE, batch_size=256, natural_rate=True,
                              estimate_alphas=list(LADDER_ALPHAS))
    rows, whole = [], []
    for seed in seeds:
        records = evaluate(TwoModelPair(after, before, tok), items, judge, alpha=1.5, measurement=measurement,
                           step=seed, run_id="t", source="audit").records
        rows += [r for r in summarize(records) if r.category is None]
        for r in records:
            r.decision_tokens = None
        whole += [r for r in summarize(records) if r.category is None]
    return rows, whole


def _half_width(rows):
    return statistics.fmean((r.natural.rate.hi - r.natural.rate.lo) / 2 / r.natural.rate.value for r in rows)


def test_a_verdict_decided_early_keeps_long_rollouts_estimable(early_pair):
    """Issue "rare behaviours inside long answers": 24-token rollouts estimate as well as 2-token
    ones when flagged weights stop at the decision token; whole-sequence weights lose most seeds."""
    tok, after, _, bad = early_pair
    truth = early_exact_rate(tok, after, bad)
    assert 0.02 < truth < 0.03
    short, _ = _early_rows(early_pair, 2, range(20))
    long, long_whole = _early_rows(early_pair, 24, range(20))
    for rows in (short, long):
        published = [r for r in rows if r.natural.rate.value is not None]
        assert len(published) >= 18, [r.natural.reason for r in rows]
        assert sum(r.natural.rate.lo <= truth <= r.natural.rate.hi for r in published) >= 0.9 * len(published)
    long_published = [r for r in long if r.natural.rate.value is not None]
    assert _half_width(long_published) <= 1.5 * _half_width([r for r in short if r.natural.rate.value is not None])
    assert all(r.natural.weights.startswith("stopping-time") and r.natural.decision_token < 2
               for r in long)
    assert all(r.natural.decision_token < 2 for r in long)
    # The same rollouts with whole-sequence weights: most estimates rest on too few effective flags.
    assert sum(r.natural.rate.value is not None for r in long_whole) <= 5
    assert all(r.natural.weights.startswith("whole-sequence") for r in long_whole)
    assert (statistics.fmean(r.natural.flagged_ess_whole for r in long)
            < 0.5 * statistics.fmean(r.natural.flagged_ess for r in long))


def test_version_1_records_read_and_fall_back_to_whole_sequence_weights(setup, tmp_path):
    """Records written before per-token densities existed (no token_ends, decision_tokens,
    proposal_token_logprobs) still read; their estimate uses whole-sequence weights and says so."""
    import json

    from lda_monitor.core.records import read_records

    records = _records(setup, 3)
    path = tmp_path / "v1.jsonl"
    new = ("token_ends", "decision_tokens", "proposal_token_logprobs")
    with open(path, "w") as f:
        for r in records:
            data = r.to_dict()
            for v in data["verdicts"].values():
                v.pop("decided_at"), v.pop("span")
            f.write(json.dumps({k: v for k, v in data.items() if k not in new}) + "\n")
    (old,) = [r for r in summarize(read_records(path)) if r.category is None]
    (now,) = [r for r in summarize(records) if r.category is None]
    assert old.natural.weights == "whole-sequence (records without per-token densities)"
    assert now.natural.weights == "whole-sequence (the judge reports no decision position)"  # \bbad\b
    assert old.natural.rate.value == pytest.approx(now.natural.rate.value, rel=1e-12)


def test_records_carry_per_token_proposal_log_probs_within_the_rounding(setup):
    """Per token, under every proposal alpha: their sums match the exact sequence sums within the
    rounding (5e-6 per token), and every flagged verdict with a position has a decision token."""
    records = _records(setup, 1)
    for r in records:
        per_token = dict((a, lp) for a, lp in r.proposal_token_logprobs)
        assert set(per_token) == {a for a, _ in r.proposal_logprobs}
        for a, total in r.proposal_logprobs:
            assert len(per_token[a]) == r.num_tokens
            assert abs(sum(per_token[a]) - total) <= 5e-6 * r.num_tokens + 1e-9
        assert len(r.token_ends) == len(r.token_ids) - (r.stop_reason in ("eos", "end_of_turn"))


def _first_token_draws(rng, rate, q_rate, n_plain, n_amp, prompts=2):
    """Draws where the first token decides: the policy says the flagged word first with
    probability ``rate`` (the exact answer), the amplified proposal with ``q_rate``; every flagged
    rollout shares that one-token prefix, so its stopping-time weight is the same number."""
    draws = []
    for prompt in range(prompts):
        for alpha, p, n in ((0.0, rate, n_plain), (2.0, q_rate, n_amp)):
            for flag in rng.random(n) < p:
                tokens_p = [math.log(rate if flag else 1 - rate), -1.0]
                tokens_q = [math.log(q_rate if flag else 1 - q_rate), -1.5]
                draws.append(Draw(prompt, alpha, bool(flag), sum(tokens_p), {2.0: sum(tokens_q)},
                                  token_target=tokens_p, token_q={2.0: tokens_q}, decision=0 if flag else None))
    return draws


def test_a_saturated_behaviour_keeps_an_interval_that_covers_it():
    """Near saturation (true rate 0.99) most pools hold no unflagged rollout, and equal
    stopping-time weights would collapse the normal interval to a point beside the truth; the
    interval must still cover the known rate in >= 90% of 200 simulated evaluations."""
    rng = np.random.default_rng(0)
    truth, covered, saturated = 0.99, 0, 0
    for _ in range(200):
        est = pooled_rate(_first_token_draws(rng, truth, 0.999, 5, 20), truncated=False)
        assert est.published and est.lo <= est.rate <= est.hi
        covered += est.lo <= truth <= est.hi
        saturated += est.flagged == est.n
    assert saturated >= 100 and covered >= 180, (saturated, covered)


def test_a_rare_behaviour_interval_is_untouched_by_the_saturation_rule():
    """The rule only acts with fewer than 3 unflagged rollouts: at a 10% rate the interval is the
    normal log-scale one, which a direct computation from the weights reproduces."""
    rng = np.random.default_rng(1)
    draws = _first_token_draws(rng, 0.1, 0.5, 10, 20, prompts=1)
    est = pooled_rate(draws, truncated=False)
    w = np.array([math.exp(d.token_target[0]) / (1 / 3 * math.exp(d.token_target[0])
                                                  + 2 / 3 * math.exp(d.token_q[2.0][0])) * d.flagged for d in draws])
    rate, se = w.mean(), w.std(ddof=1) / math.sqrt(len(w))
    assert est.rate == pytest.approx(rate)
    assert est.hi == pytest.approx(rate * math.exp(1.959963984540054 * se / rate))


def _two_path_draws(rng, prompts=10, n_amp=20, n_plain=5, n_ladder=5):
    """The real model's failure, one decisive first token: the policy reaches the behaviour mostly
    by path A (p_0 1%), which amplification does not favour (q_2 0.05%), and rarely by path B
    (p_0 0.1%), which the detection alpha blurts (q_2 60%); the ladder alpha 0.5 shows both.
    Normal text N1 is the policy's, outside the detection alpha's nucleus (top-p, as on the real
    model); N2 only the amplified samplers'. Exact rate: 1.1%."""
    tokens = ("A", "B", "N1", "N2")
    probs = {0.0: (0.01, 0.001, 0.989, 0.0), 0.5: (0.01, 0.1, 0.88, 0.01), 2.0: (0.0005, 0.6, 0.0, 0.3995)}
    log = {a: [math.log(p) if p else -math.inf for p in ps] for a, ps in probs.items()}
    draws = []
    for prompt in range(prompts):
        for alpha, n in ((2.0, n_amp), (0.0, n_plain), (0.5, n_ladder)):
            for t in rng.choice(len(tokens), size=n, p=probs[alpha]):
                flag = tokens[t] in ("A", "B")
                target, q = [log[0.0][t], -1.0], {a: [log[a][t], -1.2] for a in (0.5, 2.0)}
                draws.append(Draw(prompt, alpha, flag, sum(target), {a: sum(v) for a, v in q.items()},
                                  token_target=target, token_q=q, decision=0 if flag else None))
    return draws


def test_an_estimate_carried_by_the_detection_alphas_flags_is_withheld():
    """In the two-path world most pools never sample path A, and the many detection-alpha flags on
    B (equal stopping-time weights, so a large effective number) give a tight interval around
    ~0.1%, 11x too low; every other rule passes. Over 200 pools, no published estimate may be more
    than 2x off or miss the exact rate, and the pools without A are withheld by the share rule."""
    rng = np.random.default_rng(0)
    truth, published, by_share = 0.011, 0, 0
    for _ in range(200):
        draws = _two_path_draws(rng)
        est = pooled_rate(draws, truncated=True)
        if est.published:
            published += 1
            assert 0.5 <= est.rate / truth <= 2 and est.lo <= truth <= est.hi, est
        else:
            assert est.hi is None or est.hi >= truth
            if not any(d.flagged and d.token_target[0] == math.log(0.01) for d in draws):
                by_share += "flags from proposals overlapping the policy carry" in est.reason
    assert by_share >= 40, by_share  # about a third of the pools sample no A: all withheld for it


def test_a_withheld_bound_from_pool_flags_names_the_counts_it_used():
    """One amplified rollout flagged, no plain one: the bound counts the pool's flag over the 24 plain
    rollouts, and the reason says so (it said "1/24 plain" when plain was 0/24). The bound is
    checked against Clopper-Pearson's closed form (scipy's beta quantile)."""
    from scipy.stats import beta

    draws = [Draw(p, 0.0, False, math.log(0.5), {2.0: math.log(0.4)}) for p in range(3) for _ in range(8)]
    draws += [Draw(p, 2.0, p == 0 and i == 0, math.log(0.5), {2.0: math.log(0.4)}) for p in range(3) for i in range(8)]
    est = pooled_rate(draws, truncated=False)
    assert est.rate is None
    assert "upper bound from 1 flagged in the whole pool over 24 plain rollouts (plain alone: 0/24)" in est.reason
    assert est.hi == pytest.approx(beta.ppf(0.95, 2, 23), rel=1e-6)
