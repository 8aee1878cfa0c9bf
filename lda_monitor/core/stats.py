"""Statistics on verdicts and per-token log-probs. Pure functions; no torch.

* Flag rates carry Wilson score intervals: unlike the normal approximation they stay inside
  [0, 1] and remain informative at 0 of n, which is the common case for rare behaviours.
* Unscored verdicts (``None``: the judge failed) are counted and excluded from denominators,
  never treated as "not flagged".
* The amplification factor is reported with bounds from the two intervals, so a plain rate of
  0 gives a finite lower bound instead of a division by zero.
* The natural (alpha = 0) rate is estimated in :mod:`lda_monitor.core.natural_rate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0, 1) when n = 0.

    At k = 0 the lower bound is exactly 0 and at k = n the upper bound exactly 1 (the formula's
    center - half cancels to rounding noise there, which would turn a plain rate's lower bound
    into a tiny divisor and the amplification's upper bound into a huge finite number)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, center - half)
    hi = 1.0 if k == n else min(1.0, center + half)
    return lo, hi


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval, one value: ``value`` None when undefined (no data, or a
    withheld estimate), a bound None when unknown and ``math.inf`` when unbounded."""

    value: float | None
    lo: float | None
    hi: float | None


@dataclass(frozen=True)
class RateEstimate:
    k: int
    n: int
    rate: float | None  # None when n = 0
    lo: float
    hi: float


def rate_estimate(k: int, n: int) -> RateEstimate:
    lo, hi = wilson_interval(k, n)
    return RateEstimate(k=k, n=n, rate=k / n if n else None, lo=lo, hi=hi)


def flag_rate(flags: Sequence[bool | None]) -> tuple[RateEstimate, int]:
    """Rate of True among scored verdicts, and the number of unscored (None) ones."""
    scored = [f for f in flags if f is not None]
    return rate_estimate(sum(1 for f in scored if f), len(scored)), len(flags) - len(scored)


@dataclass(frozen=True)
class AmplificationFactor:
    """amplified rate / plain rate. ``point`` is None when the plain rate is 0 or undefined;
    ``lo`` = amp.lo / plain.hi is then still finite, ``hi`` = amp.hi / plain.lo may be inf."""

    point: float | None
    lo: float | None
    hi: float | None


def amplification_factor(amp: RateEstimate, plain: RateEstimate) -> AmplificationFactor:
    if amp.n == 0 or plain.n == 0:
        return AmplificationFactor(None, None, None)
    point = amp.rate / plain.rate if plain.rate else None
    lo = amp.lo / plain.hi if plain.hi > 0 else None
    hi = amp.hi / plain.lo if plain.lo > 0 else math.inf
    return AmplificationFactor(point, lo, hi)


def token_weighted_kl(per_rollout: Sequence[tuple[float | None, int]]) -> float:
    """Token-weighted mean of per-rollout mean KLs (``(kl, tokens)`` pairs; None counts as 0); NaN
    when there are no tokens. A KL is never negative: a rollout's value below 0 is float rounding
    of a KL near 0 (two near-equal distributions) and counts as 0."""
    tokens = sum(n for _, n in per_rollout)
    if not tokens:
        return float("nan")
    return sum(max(kl or 0.0, 0.0) * n for kl, n in per_rollout) / tokens


def coherence(logprobs_per_rollout: Sequence[Sequence[float]]) -> float:
    """Mean negative log-likelihood per token of the sampled text under the policy (lower is
    more coherent); token-weighted across rollouts; NaN when there are no tokens.

    Callers pass the policy's untruncated log-probs (``logprob_policy``), which are finite. Records
    written before those existed only have ``logprob_after``, which is -inf for a token outside the
    policy's top-p / top-k / min-p nucleus: such tokens are left out of the mean (numerator and
    count), so old records give the mean over the tokens the truncated policy could emit, never inf.
    """
    finite = [[x for x in lp if math.isfinite(x)] for lp in logprobs_per_rollout]
    total = sum(len(lp) for lp in finite)
    if not total:
        return float("nan")
    return -sum(sum(lp) for lp in finite) / total


def policy_logprobs(record) -> list[float]:
    """The log-probs :func:`coherence` reads from a record: the untruncated policy's when recorded,
    else (older records) the after model's with the sampling transforms."""
    return record.logprob_policy if record.logprob_policy is not None else record.logprob_after
