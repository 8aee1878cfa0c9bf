"""The natural rate from plain rollouts, prompt by prompt (a stratified estimate).

The suite's rate is the equal-weight mean over prompts of each prompt's rate, and plain rollouts
(alpha 0, sampled as the user samples) are draws from the policy itself. With k_j flagged among
n_j scored plain rollouts of prompt j, the estimate is

    p_hat = sum_j W_j k_j / n_j,    W_j = 1 / J,

unbiased whatever the n_j, as long as n_j does not depend on prompt j's own plain outcomes (the
allocation reads only amplified and ladder rollouts: :mod:`lda_monitor.core.allocation`). The n_j
are where the behaviour is (Neyman allocation), so a behaviour concentrated on a few prompts
costs far fewer rollouts than uniform sampling for the same precision.

**Interval.** scipy has no interval for a weighted sum of binomials, and statsmodels (not a
dependency) has none either. We use the *gamma interval* of Fay & Feuer (1997, "Confidence
intervals for directly standardized rates: a method based on the gamma distribution", Stat. Med.
16:791), the standard interval for a weighted sum of counts (directly standardised rates; the US
NCI's SEER*Stat uses it). It treats each k_j as Poisson, which over-states a binomial's variance
(n p (1 - p) < n p), and moves the upper end as if one more event fell in the stratum with the
largest weight, so it is conservative; it stays valid with zero counts and with strata of very
different sizes, where a normal interval is not, and reduces to the exact Poisson (Garwood)
interval with one stratum. The gamma quantiles are scipy's (``scipy.stats.gamma.ppf``). With
y = p_hat, v = sum_j (W_j / n_j)^2 k_j and w = max_j W_j / n_j, at level 1 - a:

    lo = Gamma(shape y^2 / v, scale v / y).ppf(a / 2)                          (0 when y = 0)
    hi = Gamma(shape (y + w)^2 / (v + w^2), scale (v + w^2) / (y + w)).ppf(1 - a / 2)   (<= 1)

Held against exact enumeration of every outcome of small stratified designs in
``tests/core/test_stratified.py``.

**Publication.** The point estimate is published with at least ``MIN_FLAGGED`` flagged plain
rollouts and an interval inside [value / 2, 2 value] (``WITHIN``), so that whenever the interval
covers the rate the value is within 2x of it. A count threshold alone does not do that: at a budget
whose expected count of flags is near the threshold, the estimates that pass it are the lucky high
ones (in the exact ``uniform`` world, 3 flagged of ~340, estimates published on >= 5 effective flags
were all more than 2x too high, with honest intervals). Otherwise only the one-sided upper bound is
given (``method`` "upper-bound"); :func:`flagged_effective` is reported as a diagnostic. A prompt without scored plain
rollouts leaves its stratum unmeasured: withheld, with no bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .natural_rate import METHOD_BOUND, MIN_FLAGGED, NaturalRate
from .records import KIND_ESTIMATE, KIND_PLAIN, RolloutRecord
from .stats import LEVEL

METHOD_STRATIFIED = "stratified-gamma"
# Published only when every value of the interval is within this factor of the estimate: then an
# interval that covers the rate (>= 95%) puts the estimate within this factor of it.
WITHIN = 2.0


@dataclass(frozen=True)
class Stratum:
    """One prompt's plain rollouts: ``flagged`` of ``scored``."""

    flagged: int
    scored: int


def is_stratified_plain(record: RolloutRecord) -> bool:
    """A plain rollout the stratified estimate counts: the plain control, or a round's rollout."""
    return record.kind == KIND_PLAIN or (record.kind == KIND_ESTIMATE and record.alpha == 0.0)


def plain_strata(records: Sequence[RolloutRecord], judge: str, n_prompts: int) -> list[Stratum]:
    """Each prompt's flagged and scored plain rollouts (judge failures left out)."""
    counts = [[0, 0] for _ in range(n_prompts)]
    for r in records:
        verdict = r.verdict(judge)
        if is_stratified_plain(r) and verdict is not None and verdict.flagged is not None:
            counts[r.prompt_index][0] += bool(verdict.flagged)
            counts[r.prompt_index][1] += 1
    return [Stratum(k, n) for k, n in counts]


def gamma_interval(strata: Sequence[Stratum], level: float = LEVEL) -> tuple[float, float, float]:
    """(estimate, lo, hi): the equal-weight mean of the strata's rates with the Fay-Feuer gamma
    interval at ``level`` (two-sided). Every stratum needs ``scored`` >= 1."""
    from scipy import stats  # seconds to import; the CLI reaches this module without computing

    weight = 1.0 / len(strata)
    unit = [weight / s.scored for s in strata]
    y = sum(u * s.flagged for u, s in zip(unit, strata, strict=True))
    v = sum(u * u * s.flagged for u, s in zip(unit, strata, strict=True))
    w = max(unit)
    tail = (1 - level) / 2
    lo = float(stats.gamma.ppf(tail, y * y / v, scale=v / y)) if y > 0 else 0.0
    hi = float(stats.gamma.ppf(1 - tail, (y + w) ** 2 / (v + w * w), scale=(v + w * w) / (y + w)))
    return y, lo, min(hi, 1.0)


def gamma_upper(strata: Sequence[Stratum], level: float = LEVEL) -> float:
    """The one-sided upper bound at ``level`` (the two-sided interval's upper end at 2 level - 1)."""
    return gamma_interval(strata, 2 * level - 1)[2]


def stratified_rate(strata: Sequence[Stratum], *, level: float = LEVEL) -> NaturalRate:
    """The stratified estimate of the suite's natural rate, published or withheld (see the module
    doc). ``level``: the interval's coverage (lower than 0.95 is never what a caller wants; a
    selection between two estimates asks for more, :mod:`lda_monitor.core.estimate_choice`)."""
    strata = list(strata)
    flagged, scored = sum(s.flagged for s in strata), sum(s.scored for s in strata)
    diagnostics = dict(flagged=flagged, n=scored, prompts=len(strata))
    if not strata:
        return NaturalRate(None, None, None, None, "no plain rollouts", **diagnostics)
    empty = sum(1 for s in strata if s.scored == 0)
    if empty:
        return NaturalRate(None, None, None, None, f"{empty} of {len(strata)} prompts have no scored plain "
                           "rollouts, so their rate is unmeasured (give every prompt plain rollouts)", **diagnostics)
    if flagged < MIN_FLAGGED:
        return NaturalRate(None, None, gamma_upper(strata, level), METHOD_BOUND,
                           f"{flagged} flagged plain rollouts (< {MIN_FLAGGED}): upper bound only", **diagnostics)
    effective = flagged_effective(strata)
    diagnostics["flagged_ess"] = effective
    rate, lo, hi = gamma_interval(strata, level)
    if lo < rate / WITHIN or hi > rate * WITHIN:
        return NaturalRate(None, None, gamma_upper(strata, level), METHOD_BOUND,
                           f"the interval [{lo:.4f}, {hi:.4f}] reaches beyond {WITHIN:g}x of the value {rate:.4f} "
                           f"({effective:.1f} effective flagged plain rollouts): too few to be within {WITHIN:g}x; "
                           "upper bound only", **diagnostics)
    return NaturalRate(rate, lo, hi, METHOD_STRATIFIED, **diagnostics)


def flagged_effective(strata: Sequence[Stratum]) -> float:
    """(sum_j u_j k_j)^2 / sum_j u_j^2 k_j with u_j = 1 / n_j: the number of equally weighted flags
    that would give the estimate its spread (the gamma interval's shape). A flag in a prompt with 3
    rollouts weighs as much as 10 in a prompt with 30; the values of estimates resting on a few such
    flags were up to several times off in the exact ``uniform`` world, with honest but huge intervals."""
    y = sum(s.flagged / s.scored for s in strata)
    v = sum(s.flagged / s.scored**2 for s in strata)
    return y * y / v if v else 0.0


def relative_half_width(estimate: NaturalRate) -> float | None:
    """(hi - lo) / (2 rate) of a published estimate; None when withheld."""
    if estimate.rate is None or not estimate.rate:
        return None
    return (estimate.hi - estimate.lo) / (2 * estimate.rate)
