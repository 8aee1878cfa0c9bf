"""How many of the natural-rate estimate's plain rollouts each prompt gets (Neyman allocation).

The suite's rate is the equal-weight mean of its prompts' rates, so prompts are the strata of a
stratified sample. For a fixed number of plain rollouts, the variance of the stratified mean
sum_j W_j^2 p_j (1 - p_j) / n_j is smallest with n_j proportional to W_j S_j, S_j the prompt's
standard deviation (Neyman 1934; Cochran, *Sampling Techniques*, 5.5). S_j is unknown; the monitor
already draws amplified rollouts of every prompt, and where amplification shows the behaviour is
where the policy has it. For a rare behaviour p_j (1 - p_j) is about p_j, and the policy's rate is
taken to grow with the amplified one, so the screening's S_j is sqrt(amplified flag rate).

The allocation may read only rollouts that are not themselves counted by the stratified estimate
(the amplified and ladder rollouts): were it to read the plain rollouts, a stratum's sample size
would depend on its own outcomes and k_j / n_j would no longer be unbiased. A floor on every prompt
keeps every stratum measured (a prompt amplification never flagged may still have the behaviour;
its rollouts are few, but the interval sees how few, :mod:`lda_monitor.core.stratified`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import UserInputError


def screening_scores(flagged: Sequence[int], scored: Sequence[int]) -> list[float]:
    """Each prompt's S_j from its screening rollouts: sqrt((flagged + 1/2) / (scored + 1)), the
    square root of the rate's posterior mean under Jeffreys' prior. Not sqrt(flagged / scored): with
    a few screening rollouts per prompt, a behaviour on every prompt leaves half of them at 0 flags by
    chance, and the raw rate would starve those of rollouts (in the exact ``uniform`` world that
    tripled the estimate's variance); the smoothed one barely moves rollouts off prompts whose rate
    is truly 0, which add no variance however few rollouts they get."""
    return [math.sqrt((k + 0.5) / (n + 1)) for k, n in zip(flagged, scored, strict=True)]


def neyman_allocation(scores: Sequence[float], total: int, *, floor: int = 1,
                      weights: Sequence[float] | None = None) -> list[int]:
    """``total`` rollouts over the strata, n_j proportional to ``weights[j] * scores[j]`` (equal
    weights by default), every stratum at least ``floor``, integers summing to ``total``.

    Strata whose proportional share falls below the floor get the floor and the rest is shared
    again among the others (the usual fix of Neyman allocation under a minimum, Cochran 5A.13);
    shares are rounded by largest remainder, ties to the earlier stratum. With every score 0 the
    allocation is proportional to the weights."""
    strata = len(scores)
    if total < floor * strata:
        raise UserInputError(f"{total} rollouts cannot give each of {strata} prompts its floor of {floor}: "
                             "raise the estimate's rollouts per prompt or lower its floor")
    weights = [1.0] * strata if weights is None else list(weights)
    demand = [w * s for w, s in zip(weights, scores, strict=True)]
    if not any(demand):
        demand = weights
    fixed: set[int] = set()
    while True:
        free = [j for j in range(strata) if j not in fixed]
        budget = total - floor * len(fixed)
        mass = sum(demand[j] for j in free)
        share = {j: budget * demand[j] / mass if mass else budget / len(free) for j in free}
        below = {j for j in free if share[j] < floor}
        if not below:
            break
        fixed |= below
    exact = [float(floor) if j in fixed else share[j] for j in range(strata)]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(strata), key=lambda j: (-(exact[j] - counts[j]), j))
    for j in order[: total - sum(counts)]:
        counts[j] += 1
    return counts
