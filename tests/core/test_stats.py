"""Statistics against closed forms."""

from __future__ import annotations

import math

import pytest

from lda_monitor.core.stats import (
    amplification_factor,
    coherence,
    flag_rate,
    rate_estimate,
    token_weighted_kl,
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
