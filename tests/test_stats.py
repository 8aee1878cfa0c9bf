"""Statistics against closed forms and brute-force enumeration."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from lda_monitor.stats import (
    amplification_factor,
    coherence,
    flag_rate,
    importance_weighted_rate,
    rate_estimate,
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


def test_importance_weighting_recovers_the_natural_rate_by_brute_force():
    """Sequences of 2 binary tokens; 'flagged' = both tokens are 1. Draw from a proposal q,
    weight by p/q, and compare with the exact rate under p from enumeration."""
    p1, q1 = 0.2, 0.6  # per-token probability of a 1 under the policy and the proposal
    exact = sum(
        (p1 if a else 1 - p1) * (p1 if b else 1 - p1)
        for a, b in itertools.product((0, 1), repeat=2) if a and b
    )
    rng = random.Random(0)
    flags, lp_s, lp_a = [], [], []
    for _ in range(20000):
        seq = [int(rng.random() < q1) for _ in range(2)]
        flags.append(all(seq))
        lp_s.append([math.log(q1 if t else 1 - q1) for t in seq])
        lp_a.append([math.log(p1 if t else 1 - p1) for t in seq])
    est = importance_weighted_rate(flags, lp_s, lp_a)
    assert est.rate == pytest.approx(exact, abs=0.005)
    assert est.reliable and 1000 < est.ess <= 20000


def test_ess_hand_computation_and_degenerate_weights():
    # log-weights 0, 0, log 2 -> w = 1, 1, 2 -> ESS = 16 / 6
    est = importance_weighted_rate([True, False, False], [[0.0], [0.0], [0.0]], [[0.0], [0.0], [math.log(2)]], min_ess=3)
    assert est.ess == pytest.approx(16 / 6) and est.rate == pytest.approx(0.25) and not est.reliable
    none = importance_weighted_rate([None], [[0.0]], [[0.0]])
    assert none.rate is None and not none.reliable
    impossible = importance_weighted_rate([True], [[-1.0]], [[float("-inf")]])
    assert impossible.rate is None and impossible.ess == 0.0
