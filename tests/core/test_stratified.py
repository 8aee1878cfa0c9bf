"""The stratified natural-rate estimate: Neyman allocation against hand computation and brute force,
the gamma interval against exact enumeration of every outcome of small stratified designs, the
choice between the two estimates, and the decided-stop of estimate rollouts against full decoding."""

from __future__ import annotations

import itertools
import math

import pytest
from scipy import stats

from lda_monitor.core.allocation import neyman_allocation, screening_scores
from lda_monitor.core.estimate_choice import choose, widened
from lda_monitor.core.natural_rate import NaturalRate
from lda_monitor.core.stratified import Stratum, gamma_interval, gamma_upper, stratified_rate
from lda_monitor.errors import UserInputError


def test_neyman_allocation_matches_a_hand_computation():
    # Shares 20 * (0.4, 0.2, 0, 0.1) / 0.7 = 11.43, 5.71, 0, 2.86: the third is raised to its floor of 1,
    # the other 19 shared again (10.86, 5.43, 2.71), floors 10 + 5 + 2, the 2 left to the largest
    # remainders (0.86 and 0.71).
    assert neyman_allocation([0.4, 0.2, 0.0, 0.1], 20, floor=1) == [11, 5, 1, 3]
    # Two strata below the floor: each gets 3, the first the other 6.
    assert neyman_allocation([1.0, 0.01, 0.01], 12, floor=3) == [6, 3, 3]
    # No screening signal: proportional to the weights.
    assert neyman_allocation([0, 0, 0], 7, floor=0) == [3, 2, 2]
    # Jeffreys-smoothed: sqrt((k + 1/2) / (n + 1)).
    assert screening_scores([1, 0, 4], [4, 4, 0]) == pytest.approx([math.sqrt(0.3), math.sqrt(0.1), math.sqrt(4.5)])
    with pytest.raises(UserInputError, match="floor"):
        neyman_allocation([1, 1, 1], 5, floor=2)


@pytest.mark.parametrize("scores", [(0.5, 0.3, 0.05, 0.0), (0.9, 0.1, 0.1, 0.6)])
def test_neyman_allocation_is_within_rounding_of_the_best_integer_allocation(scores):
    """Brute force over every integer allocation with the floor: the stratified variance
    sum S_j^2 / n_j of Neyman's is within a few percent of the smallest."""
    total, floor = 16, 1

    def variance(counts):
        return sum(s * s / n for s, n in zip(scores, counts, strict=True))

    best = min(variance(c) for c in itertools.product(range(floor, total + 1), repeat=len(scores))
               if sum(c) == total)
    assert variance(neyman_allocation(scores, total, floor=floor)) <= 1.05 * best


def _wald(strata, level):
    """The normal (Wald) interval of the stratified mean: what the enumeration must catch out."""
    z, weight = stats.norm.ppf(1 - (1 - level) / 2), 1 / len(strata)
    rate = sum(weight * s.flagged / s.scored for s in strata)
    se = math.sqrt(sum(weight**2 * (s.flagged / s.scored) * (1 - s.flagged / s.scored) / s.scored for s in strata))
    return rate, rate - z * se, rate + z * se


def _coverage(sizes, rates, level=0.95, interval=gamma_interval):
    """P(lo <= true mean <= hi) and P(true mean <= one-sided bound) by summing over every outcome."""
    truth = sum(rates) / len(rates)
    pmfs = [stats.binom.pmf(range(n + 1), n, p) for n, p in zip(sizes, rates, strict=True)]
    two_sided = one_sided = 0.0
    for counts in itertools.product(*(range(n + 1) for n in sizes)):
        prob = math.prod(pmf[k] for pmf, k in zip(pmfs, counts, strict=True))
        strata = [Stratum(k, n) for k, n in zip(counts, sizes, strict=True)]
        _, lo, hi = interval(strata, level)
        two_sided += prob * (lo <= truth <= hi)
        one_sided += prob * (truth <= gamma_upper(strata, level))
    return two_sided, one_sided


@pytest.mark.parametrize(("sizes", "rates"), [
    ((4, 10, 30), (0.3, 0.05, 0.01)),   # behaviour concentrated where rollouts are few
    ((30, 10, 4), (0.3, 0.05, 0.01)),   # ... and where they are many (Neyman's case)
    ((12, 12, 12), (0.02, 0.02, 0.02)),  # uniform and rare
    ((3, 25, 8), (0.0, 0.1, 0.6)),      # one stratum without the behaviour, one with a lot
])
def test_gamma_interval_covers_by_exact_enumeration(sizes, rates):
    two_sided, one_sided = _coverage(sizes, rates)
    assert two_sided >= 0.95 and one_sided >= 0.95, (two_sided, one_sided)


def test_the_enumeration_catches_an_interval_that_under_covers():
    assert _coverage((4, 10, 30), (0.3, 0.05, 0.01), interval=_wald)[0] < 0.9


def test_gamma_interval_is_garwoods_with_one_stratum():
    """One stratum: the exact Poisson interval chi2(2k)/2 .. chi2(2k + 2)/2, over n."""
    for k, n in [(0, 20), (3, 50), (10, 40)]:
        _, lo, hi = gamma_interval([Stratum(k, n)])
        assert lo == pytest.approx(stats.chi2.ppf(0.025, 2 * k) / 2 / n if k else 0.0, rel=1e-9)
        assert hi == pytest.approx(min(stats.chi2.ppf(0.975, 2 * k + 2) / 2 / n, 1.0), rel=1e-9)


def test_stratified_rate_publishes_withholds_and_bounds():
    published = stratified_rate([Stratum(30, 300), Stratum(12, 400), Stratum(0, 50)])
    assert published.rate == pytest.approx((0.1 + 0.03) / 3)
    assert published.rate / 2 <= published.lo < published.rate < published.hi <= 2 * published.rate
    # 3 flags, 2 of them in a prompt with 10 rollouts: (0.2 + 0.025)^2 / (2/100 + 1/1600) = 2.45 effective,
    # and an interval far wider than 2x: withheld with its bound.
    light = stratified_rate([Stratum(2, 10), Stratum(1, 40), Stratum(0, 5)])
    assert light.rate is None and light.flagged_ess == pytest.approx(0.225**2 / 0.020625) and light.hi > 0.075
    assert "2.5 effective flagged" in light.reason and "beyond 2x" in light.reason
    # Many flags, all of them in one prompt of three: within 2x and published.
    assert stratified_rate([Stratum(40, 100), Stratum(0, 100), Stratum(0, 100)]).rate == pytest.approx(0.4 / 3)
    few = stratified_rate([Stratum(1, 10), Stratum(0, 40)])
    assert few.rate is None and few.method == "upper-bound" and few.hi > 0.05 and "upper bound" in few.reason
    unmeasured = stratified_rate([Stratum(3, 10), Stratum(0, 0)])
    assert unmeasured.rate is None and unmeasured.hi is None and "no scored plain" in unmeasured.reason


def test_the_choice_takes_each_estimate_at_975_and_publishes_one():
    importance = NaturalRate(0.1, 0.05, 0.2, "mis-balance")
    wide = widened(importance)
    # Normal on the log scale: the 95% half-width log 2 = 1.96 SE/rate, so the 97.5% one is 2.2414 SE/rate.
    z95, z975 = stats.norm.ppf(0.975), stats.norm.ppf(0.9875)
    assert wide.hi == pytest.approx(0.1 * math.exp(math.log(2) * z975 / z95))
    assert wide.lo == pytest.approx(0.1 * math.exp(-math.log(2) * z975 / z95))
    tight = stratified_rate([Stratum(300, 3000), Stratum(300, 3000)], level=0.975)
    loose = stratified_rate([Stratum(30, 300), Stratum(30, 300)], level=0.975)
    sharp = NaturalRate(0.1, 0.095, 0.105, "mis-balance")
    assert choose(importance, tight).method == choose(importance, loose).method == "stratified-gamma"
    assert choose(sharp, loose) == widened(sharp)
    assert choose(None, loose) == loose and choose(importance, None) == importance
    withheld = choose(NaturalRate(None, None, 0.3, "upper-bound", "few"),
                      stratified_rate([Stratum(0, 30)], level=0.975))
    assert withheld.rate is None and withheld.hi < 0.3 and "importance sampling: few" in withheld.reason


@pytest.mark.parametrize(("settings", "message"), [
    ({"importance_sampling": False}, "importance_sampling: off needs stratified_samples_per_prompt > 0"),
    ({"natural_rate_half_width": 0.3}, "natural_rate_half_width: needs stratified_samples_per_prompt > 0"),
    ({"stratified_samples_per_prompt": 2, "stratified_floor": 3}, "stratified_floor: must be an integer from 0"),
    ({"stratified_samples_per_prompt": 2, "natural_rate_half_width": 0}, "relative half-width > 0"),
    # The ladder is off by default: its rollout count alone would otherwise be silently ignored.
    ({"estimate_samples_per_prompt": 15}, r"estimate_samples_per_prompt: sets the rollouts of a ladder, but "
                                          r"estimate_alphas is empty .* give estimate_alphas, e\.g\. \[0\.25"),
])
def test_estimate_settings_a_user_gets_wrong_are_named_with_the_fix(settings, message):
    from lda_monitor.core.measurement import Measurement

    with pytest.raises(UserInputError, match=message):
        Measurement(prompts=["hi"], **settings)


def test_a_ladders_rollout_count_is_taken_with_a_ladder_and_zero_without():
    from lda_monitor.core.measurement import Measurement

    with_ladder = Measurement(prompts=["hi"], estimate_alphas=[0.5, 1.0], estimate_samples_per_prompt=15)
    assert [(kind, n) for kind, _, n in with_ladder.runs(2.0)] == [("amplified", 4), ("plain", 4), ("estimate", 15),
                                                                     ("estimate", 15)]
    assert Measurement(prompts=["hi"], estimate_samples_per_prompt=0).runs(2.0)[-1][0] == "plain"
