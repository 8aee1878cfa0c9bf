"""The natural-rate estimator's rules one by one: each at its threshold (passes) and just past it
(withholds, saying why), then in :func:`pooled_rate` on a hand-made pool where that rule alone fails.
The bounds against closed forms and the binomial sum written out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lda_monitor.core.natural_rate import (
    MASS_TOLERANCE,
    METHOD_BOUND,
    MIN_ESS,
    MIN_FLAGGED,
    MIN_FLAGGED_ESS,
    MIN_OVERLAP,
    MIN_OVERLAP_SHARE,
    Draw,
    alphas_rule,
    ess_rule,
    flagged_ess_rule,
    greedy_rule,
    lack_of_fit_rule,
    mass_rule,
    overlap_rule,
    overlap_share,
    overlapping_proposals,
    plain_upper_bound,
    pooled_rate,
    probability_cap,
    prompt_size_rule,
    proposal_scores_rule,
    saturation_interval,
    scored_rule,
    support_rule,
    too_few_flags_rule,
    truncation_share_rule,
)

L = math.log


def test_greedy_and_empty_pools_are_withheld():
    assert greedy_rule(False) is None and "deterministic" in greedy_rule(True)
    assert scored_rule(1) is None and scored_rule(0) == "no scored rollouts"
    assert pooled_rate([Draw(0, 0.0, True, 0.0, {})] * 4, truncated=False, greedy=True).reason == greedy_rule(True)
    assert pooled_rate([Draw(0, 0.0, None, 0.0, {})] * 4, truncated=False).reason == "no scored rollouts"


def test_prompt_size_rule_needs_two_scored_rollouts_per_prompt():
    assert prompt_size_rule(3, 2) is None
    assert prompt_size_rule(3, 1) == "prompt 3 has fewer than 2 scored rollouts"
    draws = [Draw(0, 0.0, True, 0.0, {}), Draw(0, 0.0, None, 0.0, {})] + [Draw(1, 0.0, True, 0.0, {})] * 3
    assert pooled_rate(draws, truncated=False).reason == prompt_size_rule(0, 1)


def test_support_rule_needs_plain_rollouts_only_under_truncation():
    assert support_rule(0, 0, truncated=False) is None and support_rule(0, 1, truncated=True) is None
    assert "without plain rollouts (prompt 2)" in support_rule(2, 0, truncated=True)
    amplified_only = [Draw(p, 2.0, True, L(0.2), {2.0: L(0.5)}) for p in (0, 1) for _ in range(5)]
    assert pooled_rate(amplified_only, truncated=True).reason == support_rule(0, 0, truncated=True)
    assert "without plain rollouts" not in pooled_rate(amplified_only, truncated=False).reason


def test_proposal_scores_rule_names_the_missing_alpha():
    assert proposal_scores_rule(None) is None and "under alpha 2.0" in proposal_scores_rule(2.0)
    draws = [Draw(0, 0.0, True, L(0.2), {1.0: L(0.3)}), Draw(0, 1.0, False, L(0.2), {1.0: L(0.3)}),
             Draw(0, 2.0, True, L(0.2), {2.0: L(0.5)})]  # the first two lack alpha 2's density, the last alpha 1's
    assert pooled_rate(draws, truncated=False).reason == proposal_scores_rule(2.0)


def test_too_few_flags_gives_the_pools_count_over_the_plain_rollouts_as_the_bound():
    assert too_few_flags_rule(MIN_FLAGGED) is None
    assert too_few_flags_rule(MIN_FLAGGED - 1).startswith(f"{MIN_FLAGGED - 1} flagged rollouts in the pool")
    # 2 flags, both amplified and overlapping; 10 plain rollouts with none flagged: the bound uses 2 of 10.
    draws = ([Draw(0, 0.0, False, L(0.5), {1.0: L(0.5)})] * 10
             + [Draw(0, 1.0, i < 2, L(0.5), {1.0: L(0.5)}) for i in range(10)])
    est = pooled_rate(draws, truncated=False)
    assert est.method == METHOD_BOUND
    assert est.reason.endswith("upper bound from 2 flagged in the whole pool over 10 plain rollouts "
                               "(plain alone: 0/10)")
    assert est.hi == plain_upper_bound(2, 10)


def test_mass_rule_allows_its_tolerance_either_side():
    for mass in (1 - MASS_TOLERANCE, 1.0, 1 + MASS_TOLERANCE):
        assert mass_rule(mass) is None
    assert "mean balance weight 1.30" in mass_rule(1.3) and "0.70" in mass_rule(0.7)
    # Every rollout drawn at alpha 1 with q = 0.1 where the policy has p_0 = 0.5: mean weight 5.
    draws = [Draw(p, 1.0, i < 4, L(0.5), {1.0: L(0.1)}) for p in (0, 1) for i in range(10)]
    est = pooled_rate(draws, truncated=False)
    assert est.mass == pytest.approx(5.0) and est.reason == mass_rule(est.mass)
    assert est.hi is None  # no plain rollouts: no bound


def test_overlap_rules_count_flags_from_proposals_whose_raw_weight_reaches_the_threshold():
    assert overlapping_proposals({0.0: 1.0, 0.5: MIN_OVERLAP, 2.0: MIN_OVERLAP * 0.99}) == {0.0, 0.5}
    assert overlap_rule(MIN_FLAGGED) is None and overlap_rule(MIN_FLAGGED - 1).startswith(f"{MIN_FLAGGED - 1} flagged")
    terms = np.array([0.1, 0.0, 0.3, 0.6])
    assert overlap_share(terms, np.array([0.0, 0.0, 0.5, 2.0]), {0.0, 0.5}) == pytest.approx(0.4)
    assert overlap_share(np.zeros(3), np.zeros(3), {0.0}) == 0.0


def test_truncation_share_rule_applies_only_with_truncation():
    assert truncation_share_rule(MIN_OVERLAP_SHARE, truncated=True) is None
    assert truncation_share_rule(0.3, truncated=False) is None
    assert "carry 30% of the estimate" in truncation_share_rule(0.3, truncated=True)


def test_effective_number_rules_at_their_thresholds():
    assert flagged_ess_rule(MIN_FLAGGED_ESS) is None and "rests on 4.9 effective" in flagged_ess_rule(4.9)
    assert ess_rule(MIN_ESS) is None and "effective sample size 9.9 < 10" in ess_rule(9.9)
    # 2 prompts x 4 plain rollouts, all flagged (weights 1): 8 effective flags pass, a summed ESS of 8 does not.
    est = pooled_rate([Draw(p, 0.0, True, 0.0, {}) for p in (0, 1) for _ in range(4)], truncated=False)
    assert est.flagged_ess == pytest.approx(8) and est.reason.startswith(ess_rule(8.0))
    assert est.hi == 1.0  # 8 of 8 plain flagged: nothing excluded


def _binomial_cdf(k: int, n: int, p: float) -> float:
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_plain_upper_bound_is_the_one_sided_clopper_pearson_bound():
    assert plain_upper_bound(0, 20) == pytest.approx(1 - 0.05 ** (1 / 20), rel=1e-12)
    assert _binomial_cdf(3, 40, plain_upper_bound(3, 40)) == pytest.approx(0.05, rel=1e-10)
    assert plain_upper_bound(6, 6) == 1.0 and plain_upper_bound(0, 0) == 1.0


def test_a_probability_is_capped_at_1():
    assert probability_cap(1.075, 0.9, 1.3) == (1.0, 0.9, 1.0)
    assert probability_cap(0.2, 0.1, 0.4) == (0.2, 0.1, 0.4)


def test_saturation_widens_the_interval_to_1_and_the_escape_bound():
    assert saturation_interval(0.95, 0.99, MIN_FLAGGED, 10) == (0.95, 0.99)
    # 0 unflagged among 10 plain: 1 - (1 - 0.05^(1/10)) = 0.05^(1/10), the Clopper-Pearson bound's mirror.
    lo, hi = saturation_interval(0.999, 1.0, 0, 10)
    assert hi == 1.0 and lo == pytest.approx(0.05 ** (1 / 10), rel=1e-12)
    assert saturation_interval(0.5, 0.8, 1, 10) == (0.5, 1.0)  # a lower bound already below stays


def test_extrapolation_rules():
    assert alphas_rule(3) is None and "3 or more alphas > 0 (has 2)" in alphas_rule(2)
    assert lack_of_fit_rule(3.0, 2, 0.05) is None
    assert "lack of fit chi2 9.2 on 2 df, p = 0.01" in lack_of_fit_rule(9.21, 2, 0.01)
