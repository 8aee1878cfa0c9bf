"""Which natural-rate estimate is published: importance sampling or the stratified plain estimate.

The two estimate the same rate from partly different rollouts, and each wins somewhere: importance
sampling where the detection alpha's flagged text is the policy's own made likelier (short answers,
the phrase is the answer), the stratified estimate where the behaviour sits on a few prompts inside
longer answers. Publishing whichever interval came out narrower is a selection, and a selected 95%
interval covers less than 95% (the narrower one is more often the one that missed). The rule here
is honest by the union bound: when both were computed, each is taken at 97.5%, and whichever of the
two is then published (any rule: here the smaller relative half-width), it misses the rate with
probability at most P(first misses) + P(second misses) <= 2.5% + 2.5% = 5%. When only one could be
computed (no densities: ``natural_rate`` scoring off), it is published at 95%.

The importance-sampling interval is normal on the log scale (:mod:`lda_monitor.core.natural_rate`),
rate * exp(+-z SE / rate); it is taken to 97.5% by raising its log-scale half-widths to the power
z_0.9875 / z_0.975, which leaves it exactly the 97.5% interval where it was not clipped and wider
where it was (a bound clipped at 1 stays 1; a lower end lowered for saturation is lowered further).
"""

from __future__ import annotations

from dataclasses import replace

from .natural_rate import NaturalRate
from .stats import LEVEL, Z_95
from .stratified import relative_half_width

BOTH_LEVEL = 1 - (1 - LEVEL) / 2  # each estimate's level when either may be published: 2 x 2.5% <= 5%


def widened(importance: NaturalRate) -> NaturalRate:
    """A published importance-sampling estimate with its interval at ``BOTH_LEVEL``."""
    from scipy import stats  # seconds to import; the CLI reaches this module without computing

    if importance.rate is None or not importance.rate:
        return importance
    widen = float(stats.norm.ppf(1 - (1 - BOTH_LEVEL) / 2)) / Z_95
    rate = importance.rate
    lo = rate * (importance.lo / rate) ** widen if importance.lo > 0 else 0.0
    return replace(importance, lo=lo, hi=min(rate * (importance.hi / rate) ** widen, 1.0))


def choose(importance: NaturalRate | None, stratified: NaturalRate | None) -> NaturalRate:
    """The estimate to publish. ``importance``: the pooled importance-sampling estimate at 95%
    (None when the rollouts carry no densities); ``stratified``: the stratified estimate, computed at
    ``BOTH_LEVEL`` when ``importance`` is given and at 95% otherwise (None without plain rollouts).

    Both withheld: the stratified upper bound when there is one (decided before looking at either
    value, so it keeps its level), else the importance-sampling one, with both reasons."""
    if importance is None or stratified is None:
        chosen = stratified if importance is None else importance
        if chosen is None:
            raise ValueError("choose() needs at least one estimate")
        return chosen
    candidates = [e for e in (widened(importance), stratified) if e.rate is not None]
    if candidates:
        return min(candidates, key=lambda e: relative_half_width(e) if e.rate else float("inf"))
    bound = stratified if stratified.hi is not None else importance
    reason = f"importance sampling: {importance.reason}; stratified plain rollouts: {stratified.reason}"
    return replace(bound, reason=reason)
