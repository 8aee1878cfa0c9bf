"""Statistics against independent computations: closed forms, brute-force sums over every
outcome, and scipy functions other than the one the code calls. The edge cases that matter here
(0 or all flagged, n = 0, tiny n) are each checked."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from scipy import stats

from lda_monitor.core.stats import (
    Z_95,
    amplification_factor,
    bh_qvalues,
    clopper_pearson_upper,
    coherence,
    effective_size,
    flag_rate,
    hypergeom_pmf,
    log_scale_interval,
    rate_estimate,
    smallest_pvalue,
    stratified_pvalues,
    token_weighted_kl,
    weighted_line,
    wilson_interval,
)


def test_wilson_known_values():
    # Reference values computed from the textbook formula by hand (z = 1.96).
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)


def test_flag_rate_excludes_unscored():
    rate, unscored = flag_rate([True, False, None, True, None])
    assert (rate.k, rate.n, unscored) == (2, 3, 2)
    assert rate.rate == pytest.approx(2 / 3)
    empty, unscored = flag_rate([None, None])
    assert empty.rate is None and empty.n == 0 and unscored == 2


def test_amplification_with_zero_plain_rate_has_finite_lower_bound():
    amp, plain = rate_estimate(8, 20), rate_estimate(0, 20)
    factor = amplification_factor(amp, plain)
    assert factor.point is None
    assert factor.lo == pytest.approx(wilson_interval(8, 20)[0] / wilson_interval(0, 20)[1])
    assert factor.hi == math.inf
    both = amplification_factor(rate_estimate(8, 20), rate_estimate(2, 20))
    assert both.point == pytest.approx(4.0)


def test_coherence_is_token_weighted_nll():
    assert coherence([[-1.0, -3.0], [-2.0]]) == pytest.approx(2.0)
    assert math.isnan(coherence([]))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12, 24, 100, 333, 1000])
def test_wilson_bounds_are_exact_at_zero_and_n(n):
    # Closed forms: the Wilson lower bound of 0 of n is 0 and the upper bound of n of n is 1
    # (n = 3 gave 5.6e-17 and 1 - 1e-16 before the bounds were set exactly).
    assert wilson_interval(0, n)[0] == 0.0
    assert wilson_interval(n, n)[1] == 1.0
    if n > 1:
        assert 0.0 < wilson_interval(1, n)[0] and wilson_interval(n - 1, n)[1] < 1.0


@pytest.mark.parametrize("n", [3, 12, 24, 100])
def test_amplification_bounds_keep_their_documented_form(n):
    # Plain rate 0 of n: the upper bound is unbounded (inf, not a huge finite quotient);
    # amplified 0 of n: the lower bound is exactly 0.
    factor = amplification_factor(rate_estimate(2, n), rate_estimate(0, n))
    assert factor.hi == math.inf
    none_flagged = amplification_factor(rate_estimate(0, n), rate_estimate(2, n))
    assert none_flagged.lo == 0.0 and none_flagged.point == 0.0


def test_token_weighted_kl_is_never_negative():
    # A KL of -3e-7 is rounding of a KL near 0: it counts as 0, so equal distributions give 0.
    assert token_weighted_kl([(-3e-7, 10), (0.0, 5)]) == 0.0
    assert token_weighted_kl([(-3e-7, 10), (0.3, 10)]) == pytest.approx(0.15)
    assert token_weighted_kl([(None, 4), (1.0, 4)]) == pytest.approx(0.5)
    assert math.isnan(token_weighted_kl([]))


def _textbook_wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_matches_the_textbook_formula_at_every_count_of_tiny_n():
    assert Z_95 == pytest.approx(stats.norm.ppf(0.975), rel=1e-15)
    for n in range(1, 31):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            ref_lo, ref_hi = _textbook_wilson(k, n)
            assert lo == pytest.approx(max(ref_lo, 0.0), abs=1e-14) and hi == pytest.approx(min(ref_hi, 1.0), abs=1e-14)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # nothing observed: nothing excluded


def _binomial_cdf(k: int, n: int, p: float) -> float:
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 50])
def test_clopper_pearson_upper_leaves_exactly_5_percent_below_k(n):
    """The bound p solves P(Bin(n, p) <= k) = 0.05 (the binomial sum written out), and at 0 of n it is the
    closed form 1 - 0.05^(1/n)."""
    assert clopper_pearson_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-13)
    for k in range(n):
        assert _binomial_cdf(k, n, clopper_pearson_upper(k, n)) == pytest.approx(0.05, rel=1e-10)
    assert clopper_pearson_upper(n, n) == 1.0  # all flagged: nothing excluded
    assert clopper_pearson_upper(0, 0) == 1.0  # no trials


def test_log_scale_interval_is_symmetric_in_log_and_stays_positive():
    lo, hi = log_scale_interval(0.01, 0.02)  # se twice the value: a symmetric interval would go below 0
    assert 0 < lo < 0.01 < hi
    assert math.log(hi / 0.01) == pytest.approx(1.959963984540054 * 2) and lo * hi == pytest.approx(0.01**2)


def test_effective_size_is_n_for_equal_weights_and_1_for_one_weight():
    assert effective_size(np.full(7, 0.3)) == pytest.approx(7)
    assert effective_size(np.array([0.0, 2.5, 0.0])) == pytest.approx(1)
    assert effective_size(np.zeros(4)) == 0.0
    assert effective_size(np.array([1.0, 3.0])) == pytest.approx(16 / 10)


def test_weighted_line_matches_polyfit_row_by_row():
    rng = np.random.default_rng(0)
    x = np.array([0.25, 0.5, 1.0, 2.0])
    y, w = rng.normal(size=(5, 4)), rng.uniform(0.1, 3, size=(5, 4))
    intercept, slope = weighted_line(x, y, w)
    for row in range(5):
        ref_slope, ref_intercept = np.polyfit(x, y[row], 1, w=np.sqrt(w[row]))  # polyfit weights residuals
        assert (intercept[row], slope[row]) == (pytest.approx(ref_intercept), pytest.approx(ref_slope))


def test_hypergeometric_pmf_is_the_ratio_of_binomial_coefficients():
    for n_a, n_p in [(1, 1), (5, 5), (7, 3), (3, 9)]:
        for m in range(n_a + n_p + 1):  # m = 0 and m = all: one outcome, probability 1
            ref = [math.comb(n_a, k) * math.comb(n_p, m - k) / math.comb(n_a + n_p, m) if m - k <= n_p else 0.0
                   for k in range(min(n_a, m) + 1)]
            assert list(hypergeom_pmf(n_a, n_p, m)) == pytest.approx(ref, rel=1e-12, abs=1e-300)


def test_one_stratum_is_fishers_exact_test():
    for n_a, n_p in [(1, 1), (5, 5), (7, 3), (12, 9)]:
        for a in range(n_a + 1):
            for b in range(n_p + 1):
                over, under = stratified_pvalues([(a, n_a, b, n_p)])
                table = [[a, n_a - a], [b, n_p - b]]
                assert over == pytest.approx(stats.fisher_exact(table, alternative="greater")[1], rel=1e-9)
                assert under == pytest.approx(stats.fisher_exact(table, alternative="less")[1], rel=1e-9)


def _enumerated(strata) -> tuple[float, float]:
    """P(T >= t) and P(T <= t) by listing every equally likely way each stratum's holders of the
    phrase could sit among its rollouts (the within-prompt permutation null)."""
    per_stratum = []
    for a, n_a, b, n_p in strata:
        counts = [sum(1 for i in chosen if i < n_a) for chosen in itertools.combinations(range(n_a + n_p), a + b)]
        per_stratum.append(counts)
    observed = sum(s[0] for s in strata)
    ge = le = total = 0
    for combo in itertools.product(*per_stratum):
        t = sum(combo)
        total += 1
        ge += t >= observed
        le += t <= observed
    return ge / total, le / total


@pytest.mark.parametrize("strata", [
    [(3, 4, 0, 4), (1, 3, 2, 5)],
    [(2, 3, 1, 3), (0, 2, 2, 4), (4, 4, 0, 3)],
    [(0, 3, 0, 3), (3, 3, 3, 3), (2, 5, 1, 2)],  # strata without information (none, all hold it) shift only
    [(1, 4, 0, 0), (2, 3, 1, 4)],  # a prompt with no plain rollouts
    [(0, 0, 2, 3), (1, 1, 0, 1)],  # no amplified rollouts; tiny n
    [(0, 3, 0, 3)],  # nothing holds the phrase: p = 1 both ways
    [(2, 2, 3, 3)],  # everything holds it: p = 1 both ways
])
def test_stratified_test_matches_enumeration(strata):
    over, under = stratified_pvalues(strata)
    ref_over, ref_under = _enumerated(strata)
    assert over == pytest.approx(ref_over, rel=1e-12)
    assert under == pytest.approx(ref_under, rel=1e-12)


@pytest.mark.parametrize("strata", [
    [(3, 4, 0, 4), (1, 3, 2, 5)],
    [(2, 3, 1, 3), (0, 2, 2, 4), (4, 4, 0, 3)],
    [(0, 3, 0, 3), (1, 1, 0, 1)],
])
def test_smallest_pvalue_is_the_enumerated_p_value_of_the_most_extreme_tables(strata):
    """Every holder on the amplified side (as far as each stratum's sizes allow), or every one on
    the plain side: the smaller of the two enumerated p-values."""
    def extreme(over: bool):
        out = []
        for a, n_a, b, n_p in strata:
            m = a + b
            k = min(n_a, m) if over else max(0, m - n_p)
            out.append((k, n_a, m - k, n_p))
        return out

    ref = min(_enumerated(extreme(True))[0], _enumerated(extreme(False))[1])
    assert smallest_pvalue(strata) == pytest.approx(ref, rel=1e-12)


def _brute_force_bh(p: list[float]) -> list[float]:
    """q_i = min over j with p_j >= p_i of m p_j / rank_j (capped at 1), ranks counted with ties broken by order."""
    m = len(p)
    ranked = sorted(range(m), key=lambda i: p[i])
    rank = {i: r + 1 for r, i in enumerate(ranked)}
    return [min(1.0, min(m * p[j] / rank[j] for j in range(m) if rank[j] >= rank[i])) for i in range(m)]


def test_bh_matches_the_definition():
    rng = random.Random(3)
    p = [rng.random() ** 3 for _ in range(200)] + [1.0, 0.0, 0.5, 0.5]
    assert bh_qvalues(p) == pytest.approx(_brute_force_bh(p), rel=1e-12)
    assert bh_qvalues([0.03]) == [0.03] and bh_qvalues([]) == []
    assert bh_qvalues([0.01, 0.01, 0.04]) == pytest.approx([0.015, 0.015, 0.04])
