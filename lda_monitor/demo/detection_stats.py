"""The detection benchmark's statistics: the amplification's interval and the sequential rule.

Amplification is a ratio of two binomial rates (amplified flags / amplified rollouts over plain
flags / plain rollouts at the same step), so its interval is scipy's relative-risk interval
(``scipy.stats.contingency.relative_risk(...).confidence_interval``: Katz's log interval). With no
plain flag that interval is undefined (scipy returns NaN); the ratio then has only a lower bound,
the amplified rate's Wilson lower bound over the plain rate's Wilson upper bound
(:func:`lda_monitor.core.stats.wilson_interval`), which is what the benchmark reports. With no
amplified flag (an alpha of the sweep so large that the answers fall apart) the ratio is 0 with an
upper bound: the amplified rate's Wilson upper bound over the plain rate's Wilson lower bound.

The natural rate's brute force stops early by a group-sequential rule: it looks after every
block of plain rollouts and stops once the ratio's interval lies wholly above or wholly below the
target. So that stopping at the first decided look keeps the error of the decision at 5%, each
look's decision uses the Bonferroni interval at level ``1 - 0.05 / looks`` over the planned
looks; the reported interval is the ordinary 95% one at the look where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.stats import wilson_interval

LEVEL = 0.95


@dataclass(frozen=True)
class Ratio:
    estimate: float | None  # None: no plain flag (the ratio is unbounded above)
    lo: float
    hi: float | None  # None: unbounded
    method: str

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "lo": self.lo, "hi": self.hi, "method": self.method}


def ratio_interval(amp_k: int, amp_n: int, plain_k: int, plain_n: int, level: float = LEVEL) -> Ratio:
    """amplified rate / plain rate with its ``level`` interval (see the module docstring)."""
    from scipy.stats.contingency import relative_risk

    if amp_n <= 0 or plain_n <= 0:
        raise ValueError("a rate needs at least one rollout on each side")
    if plain_k == 0:
        amp_lo = wilson_interval(amp_k, amp_n, level)[0]
        plain_hi = wilson_interval(0, plain_n, level)[1]
        return Ratio(None, amp_lo / plain_hi, None, "wilson-bound (no plain flag)")
    if amp_k == 0:  # Katz's interval is undefined here too; the ratio is 0 with a finite upper bound
        amp_hi = wilson_interval(0, amp_n, level)[1]
        plain_lo = wilson_interval(plain_k, plain_n, level)[0]
        return Ratio(0.0, 0.0, amp_hi / plain_lo, "wilson-bound (no amplified flag)")
    result = relative_risk(amp_k, amp_n, plain_k, plain_n)
    ci = result.confidence_interval(level)
    lo, hi = float(ci.low), float(ci.high)
    return Ratio(float(result.relative_risk), 0.0 if math.isnan(lo) else lo,
                 None if math.isinf(hi) or math.isnan(hi) else hi, "scipy relative_risk (Katz log)")


def decision(amp_k: int, amp_n: int, plain_k: int, plain_n: int, target: float, looks: int) -> str | None:
    """"met" (lower bound >= target), "missed" (upper bound < target) or None (undecided), at the
    Bonferroni level over ``looks`` planned looks."""
    ratio = ratio_interval(amp_k, amp_n, plain_k, plain_n, level=1 - (1 - LEVEL) / max(looks, 1))
    if ratio.lo >= target:
        return "met"
    if ratio.hi is not None and ratio.hi < target:
        return "missed"
    return None
