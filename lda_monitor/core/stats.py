"""Statistics on verdicts, rollout weights and per-token log-probs. Pure functions; no torch.

Every test and interval is a named scipy call; the few computations written here say why no
library has them. Each function says which rule it applies:

* Flag rates carry Wilson score intervals: unlike the normal approximation they stay inside
  [0, 1] and remain informative at 0 of n, which is the common case for rare behaviours.
* Unscored verdicts (``None``: the judge failed) are counted and excluded from denominators,
  never treated as "not flagged".
* The amplification factor is reported with bounds from the two intervals, so a plain rate of
  0 gives a finite lower bound instead of a division by zero.
* One-sided bounds on a binomial proportion are Clopper-Pearson (exact), for the natural-rate
  estimate's upper bounds (:mod:`lda_monitor.core.natural_rate`).
* Discovery's phrase test is the exact stratified conditional test (Fisher's exact test per
  prompt, combined over prompts), with Benjamini-Hochberg q-values (:mod:`lda_monitor.core.discovery`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# numpy and scipy are imported inside the functions that use them: ``import scipy.stats`` takes seconds,
# and the CLI (``lda-monitor --help``) reaches this module through discovery without computing anything.
LEVEL = 0.95
Z_95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975): the two-sided 95% normal quantile


# ----- intervals on a proportion ---------------------------------------------------------------

@functools.lru_cache(maxsize=65536)
def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0, 1) when n = 0 (nothing observed).

    At k = 0 the lower bound is exactly 0 and at k = n the upper bound exactly 1 (scipy sets them;
    the formula's center - half would leave rounding noise that turns a plain rate's lower bound
    into a tiny divisor and the amplification's upper bound into a huge finite number). Cached:
    ``binomtest`` also computes a p-value nobody reads, and a summary asks for the same few counts
    (every row of a run has the same n) many times."""
    from scipy import stats

    if n == 0:
        return 0.0, 1.0
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def clopper_pearson_upper(k: int, n: int, level: float = LEVEL) -> float:
    """Clopper-Pearson one-sided upper bound on a proportion from k successes in n trials: the
    largest p with P(Binomial(n, p) <= k) >= 1 - level; 1 when n = 0 or k = n (nothing excluded)."""
    from scipy import stats

    if n == 0 or k >= n:
        return 1.0
    # The Beta(k + 1, n - k) quantile is the bound in closed form; binomtest's "exact" interval finds
    # the same root with brentq, whose tolerance leaves ~1e-11 relative error.
    return float(stats.beta.ppf(level, k + 1, n - k))


def log_scale_interval(value: float, se: float, z: float = Z_95) -> tuple[float, float]:
    """``value * exp(-+ z se / value)``: the normal interval of log(value) by the delta method, for
    a positive, right-skewed estimate (it stays above 0 where value - z se would not). Written
    here: no library takes a (value, standard error) pair to this interval."""
    spread = math.exp(z * se / value)
    return value / spread, value * spread


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


# ----- importance weights -----------------------------------------------------------------------

def effective_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 of non-negative weights; 0 when all are 0.
    Written here: scipy has no function for it (it is the weights' own summary, not a test)."""
    return float(weights.sum() ** 2 / (weights * weights).sum()) if weights.any() else 0.0


def weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(intercept, slope) of the weighted least-squares line y ~ x over the last axis, for every row
    of ``y`` and ``w`` at once. Written here: ``np.polyfit`` and statsmodels' WLS fit one weight
    vector per call, and a bootstrap refits thousands of rows, each with its own weights."""
    sw, sx, sy = w.sum(-1), (w * x).sum(-1), (w * y).sum(-1)
    sxx, sxy = (w * x * x).sum(-1), (w * x * y).sum(-1)
    slope = (sw * sxy - sx * sy) / (sw * sxx - sx * sx)
    return (sy - slope * sx) / sw, slope


# ----- discovery's exact test and its multiplicity correction -----------------------------------

@functools.lru_cache(maxsize=4096)
def hypergeom_pmf(n_a: int, n_p: int, m: int) -> np.ndarray:
    """P(X = k) for k = 0..min(n_a, m): amplified rollouts among the ``m`` of a stratum that
    contain a phrase, when ``n_a`` amplified and ``n_p`` plain rollouts are exchangeable (read-only).

    Cached: an evaluation tests every candidate phrase over the same prompts' sizes, so the same
    few hundred laws recur, and a scipy distribution call spends most of its time checking its
    arguments (``python -m lda_monitor.demo.discovery_bench`` measures the cost)."""
    import numpy as np
    from scipy import stats

    pmf = stats.hypergeom.pmf(np.arange(min(n_a, m) + 1), n_a + n_p, n_a, m)
    pmf.flags.writeable = False
    return pmf


def _informative(n_a: int, n_p: int, m: int) -> bool:
    """A stratum whose count can vary: rollouts of both kinds, and some but not all hold the phrase."""
    return bool(n_a and n_p and 0 < m < n_a + n_p)


def stratified_pvalues(strata: Sequence[tuple[int, int, int, int]]) -> tuple[float, float]:
    """One-sided exact p-values (over, under) of the phrase counts ``strata``: per stratum
    (amplified containing, amplified total, plain containing, plain total). The statistic is the
    total amplified count; its null law, given each stratum's margins, is the convolution of the
    strata's hypergeometrics (the exact conditional test of a common odds ratio of 1; with one
    stratum it is Fisher's exact test). ``over`` = P(T >= observed), ``under`` = P(T <= observed).
    Written here: scipy's ``fisher_exact`` takes one 2x2 table, and statsmodels' stratified tables
    give the asymptotic Cochran-Mantel-Haenszel test only."""
    import numpy as np

    law, observed = np.ones(1), 0  # a stratum whose count is fixed shifts both by a constant: left out
    for a, n_a, b, n_p in strata:
        if _informative(n_a, n_p, a + b):
            law = np.convolve(law, hypergeom_pmf(n_a, n_p, a + b))
            observed += a
    over = min(1.0, math.fsum(law[observed:]))
    under = min(1.0, math.fsum(law[: observed + 1]))
    return over, under


def smallest_pvalue(strata: Sequence[tuple[int, int, int, int]]) -> float:
    """The smallest p-value either one-sided test could give with these margins: every rollout
    containing the phrase on one side (the product of each stratum's extreme probability)."""
    over = under = 1.0
    for a, n_a, b, n_p in strata:
        m = a + b
        if _informative(n_a, n_p, m):
            pmf = hypergeom_pmf(n_a, n_p, m)
            over *= float(pmf[-1])
            under *= float(pmf[max(0, m - n_p)])
    return min(over, under)


def bh_qvalues(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order."""
    from scipy import stats

    if not len(pvalues):
        return []
    return [float(q) for q in stats.false_discovery_control(pvalues, method="bh")]


def stratified_rank_sum(strata: Sequence[tuple[Sequence[float], Sequence[float]]]) -> tuple[float, float]:
    """One-sided p-values (amplified lower, amplified higher) of van Elteren's stratified rank-sum
    test: per stratum (amplified values, plain values) the Wilcoxon rank sum of the amplified ones
    (midranks for ties), centred and weighted by 1 / (stratum size + 1), summed; its tie-corrected
    variance likewise; the sum over its standard deviation against the normal law. With one
    stratum it is the Mann-Whitney test without continuity correction. Strata with one kind only,
    or all values tied, carry nothing. (scipy tests one pair of samples; the stratified sum is
    written here.)"""
    from scipy import stats

    total = variance = 0.0
    for amplified, plain in strata:
        n_a, n_p = len(amplified), len(plain)
        n = n_a + n_p
        if not (n_a and n_p):
            continue
        ranks = stats.rankdata([*amplified, *plain])
        ties = stats.tiecorrect(ranks)  # 1 - sum(t^3 - t) / (n^3 - n)
        weight = 1.0 / (n + 1)
        total += weight * (float(ranks[:n_a].sum()) - n_a * (n + 1) / 2)
        variance += weight**2 * n_a * n_p * (n + 1) / 12 * ties
    if variance <= 0:
        return 1.0, 1.0
    z = total / math.sqrt(variance)
    return float(stats.norm.cdf(z)), float(stats.norm.sf(z))
