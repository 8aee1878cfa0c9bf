"""How often the policy itself (alpha = 0, sampled as the user samples it) shows the flagged
behaviour, estimated from the rollouts an evaluation already draws. numpy and scipy; no I/O.

**Pooled estimate (multiple importance sampling, balance heuristic).** Every rollout's sequence
density is exact under any alpha (each decode step is normalised), so an evaluation's rollouts
- amplified at the detection alpha, plain (alpha 0), and an optional *ladder* of small alphas -
are draws from known proposals q_k with shares c_k = n_k / N. With the target p_0 (the policy
with the user's temperature and truncation) the balance heuristic gives, per prompt,

    p_hat = (1/N) sum_i f_i w_i,    w_i = p_0(y_i) / sum_k c_k q_k(y_i),

unbiased for P_0(flagged) wherever the mixture covers p_0's support. The suite's rate is the
equal-weight mean over prompts (a suite's rate is the mean of its prompts' rates). Its standard
error uses the pooled sample variance of f_i w_i per prompt, which over-estimates the variance
of a stratified draw by the spread between the proposals' means (conservative, never smaller):
SE = sqrt(sum_j var_j) / J.

The 95% interval is normal on the log scale, p_hat * exp(+-1.96 SE / p_hat) (capped at 1): a
weighted estimate of a small rate is right-skewed, and its sample variance is small exactly when
it under-estimates (few flagged draws), so a symmetric p_hat +- 1.96 SE misses the truth from
below more often than 5%; the log-scale interval stays above 0 and holds its coverage in the exact
tests. (Control variates on the ratios q_k / mixture, Owen & Zhou 2000, cut the variance but are
biased at these pool sizes.)

Why a ladder: the detection alpha's samples barely overlap the policy (their sequence
log-weights are large and negative: README "Reading the results"), so alone they carry almost no
information about p_0; small alphas overlap both p_0 and each other, and the balance heuristic lets every
rollout count under the proposal that explains it best.

**Stopping-time weights.** A judge that reports where its verdict was decided (a pattern judge:
the token that completed the first flagging text, :mod:`lda_monitor.core.decision`) lets a
flagged rollout's weight use the densities of its tokens up to that decision token tau only,
w_tau = p_0(y_<=tau) / sum_k c_k q_k(y_<=tau). The decision token is a stopping time (decided by
the tokens so far), the flag is final there, and under the mixture q = sum_k c_k q_k the prefix
ratio L_t = p_0(y_<=t) / q(y_<=t) is a martingale with E_q[L_T | y_<=tau] = L_tau (optional
stopping; L_T is the whole-sequence weight). So E_q[f w_tau] = E_q[f L_T] = P_0(flagged):
unbiased as before, and f w_tau = E_q[f L_T | y_<=tau] has variance at most that of f L_T
(conditional expectation never increases variance; the pooled variance the interval uses is this
mixture variance). The tokens after the decision say nothing about the verdict, yet their ratios
multiply into a whole-sequence weight whose spread grows with length. Flags without a position
(an LLM judge) and records without per-token densities keep whole-sequence weights, and the
estimate says so (``weights``).

Unflagged rollouts add 0 to the estimate whatever their weight; the diagnostics that do use
every rollout's weight (mass, ESS, raw weights, overlap) use weights truncated at one fixed
*horizon* H, the furthest token any flagged rollout's weight reaches (the whole sequence when
some flag has no position). A fixed horizon is a stopping time too, so the mass check still
tests E_q[w_H] = 1 - that the proposals cover the policy's mass over exactly the tokens the
estimate's weights depend on - and the ESS measures the spread of weights over those tokens,
not over text the estimate never looks at.

**Support (truncation).** With top-k / top-p / min-p an amplified proposal can give zero
probability to a completion the policy produces; importance sampling over such proposals
is biased downward whatever the sample size. The estimator uses the truncated densities that
were really sampled from and needs plain rollouts in the pool: the target is then itself a
mixture component, so sum_k c_k q_k >= c_0 p_0 > 0 wherever p_0 > 0 (every weight is at most
1/c_0) and the estimate stays unbiased. With truncation and no plain rollouts for some prompt, the
estimate is withheld: missing mass cannot be seen from samples (an unvisited path is invisible).
Untransformed proposals would not help, since the samples were not drawn from them.

**Reliability rule** (an estimate that fails it is withheld: value None and a reason):

* not greedy decoding, and every prompt with data has at least 2 scored rollouts, each scored
  under every proposal of its pool (records from older versions carry no proposal scores);
* support covered as above;
* at least ``MIN_FLAGGED`` flagged rollouts in the pool. With fewer, the normal interval
  under-covers, and only an upper bound is published: the plain rollouts alone are Binomial
  draws from p_0, and the mixture sees the behaviour at least as often as its plain share,
  so the Clopper-Pearson upper bound of (flagged in the pool) / (plain rollouts) is valid;
* the mean balance weight (the estimate of P_0(anything) = 1) within ``MASS_TOLERANCE`` of 1:
  far from 1 means the proposals miss (or double-count) policy mass;
* at least ``MIN_FLAGGED`` flagged rollouts drawn from proposals that overlap the policy (mean
  raw weight p_0/q_k on their own rollouts >= ``MIN_OVERLAP``; plain always does). Flags seen
  only at a detection alpha, whose raw weights are tiny, rest on weights spread over orders of
  magnitude: estimates from them can be far off while looking precise;
* with truncation (top-k / top-p / min-p), those flags carry at least ``MIN_OVERLAP_SHARE`` of
  the estimate. Under a nucleus the proposals exclude much of each other's text (real model, top-p
  0.95: 27 of 50 plain rollouts hold a token outside the alpha = 0.25 nucleus), so the ladder no
  longer bridges the policy and the detection alpha: the policy's own paths to the behaviour (the
  planted sentence after a normal first sentence) are reached by plain and ladder rollouts only,
  while the detection alpha reaches it by paths amplification favours (the sentence blurted at
  the start). When the latter carry the estimate, many rollouts sharing one short flagged prefix
  have equal weights, the effective number below looks large and the interval is tight around
  a value several times too low (top-p 0.95, 1% and 3%: x0.27, x0.37, x0.33, no interval
  covering; the share was 26-53% there and 77-90% in every other seed). Without truncation the
  rule is not applied: where the detection alpha's flagged paths are the policy's own, made
  likelier (the planted sentence as the whole answer), right estimates carry 36-52% (9 of 10
  would be withheld), and the share cannot tell the two cases apart;
* the flagged rollouts' effective number (sum f w)^2 / sum (f w)^2 (per-prompt terms scaled by
  1/N_j) at least ``MIN_FLAGGED_ESS`` (5, the n p >= 5 rule of thumb for a normal interval on a
  sum of counts): with fewer, a few detection-alpha rollouts whose weights vary by orders of
  magnitude carry the estimate, and the sample variance has not seen that tail;
* summed effective sample size (sum w)^2 / sum w^2 over prompts at least ``MIN_ESS``.

At the other end, with fewer than ``MIN_FLAGGED`` *unflagged* rollouts in the pool the estimate
is published but its interval reaches 1 and down to the Clopper-Pearson lower bound of (unflagged
in the pool) / (plain rollouts): the sample variance has not seen the paths that escape the
behaviour (rollouts sharing one flagged prefix have equal stopping-time weights, and the normal
interval would have zero width).

Diagnostics reported with every estimate: per-prompt ESS (their mean is published), the mean
balance weight, and the mean raw weight p_0 / q_k of each proposal's own rollouts, which is about
1 when q_k alone covers the policy and falls towards 0 as its overlap with the policy vanishes.

Unscored verdicts (a judge failure, ``flagged`` None) are excluded, and the shares c_k are
counted over scored rollouts only: unbiased when failures do not depend on the completion (an
outage); a judge that fails on exactly the flagged completions biases every rate, this one too.

**Extrapolated estimate (sweeps).** :func:`extrapolated_rate` fits the empirical logit of the
flag rate against alpha over the alphas > 0 of an evaluation (a sweep, or the ladder plus the
detection alpha) by weighted least squares and reads the fit at alpha 0, with a parametric
bootstrap interval (the logit-path-extrapolation idea). It needs no densities and works for any
sampler, but it assumes the logit-linear shape, so it is withheld unless that shape is checked
(3 or more alphas) and not rejected by a lack-of-fit test. Even a passing fit extrapolates beyond
the data; the pooled estimate is unbiased and should be preferred when published.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .stats import clopper_pearson_upper, effective_size, log_scale_interval, weighted_line

MIN_FLAGGED = 3
MIN_FLAGGED_ESS = 5.0
MIN_OVERLAP = 0.1  # mean raw weight p_0/q_k for a proposal to count as overlapping the policy
# With truncation: the share of the estimate that flags from overlapping proposals must carry. Set
# on the real-model benchmark at top-p 0.95, where the wrong published estimates carried 0.26-0.53
# and every other 0.77-0.90 (README "At a user's own sampling: top-p 0.95").
MIN_OVERLAP_SHARE = 2 / 3
MIN_ESS = 10.0
MASS_TOLERANCE = 0.25
METHOD_POOLED = "mis-balance"
METHOD_BOUND = "upper-bound"
METHOD_EXTRAPOLATED = "logit-extrapolation"


@dataclass(frozen=True)
class Draw:
    """One rollout as the estimator sees it.

    ``alpha``: the proposal it was drawn from (0 = plain); ``logp_target``: its sequence
    log-density under the policy as sampled by the user; ``logq``: its sequence log-density
    under the sampler at each alpha > 0 it was scored at (alpha 0's density is ``logp_target``).
    """

    prompt: int
    alpha: float
    flagged: bool | None
    logp_target: float
    logq: dict[float, float]
    # Per-token log-densities (target; each alpha > 0) and the decision token of a flag that
    # reports one, for stopping-time weights; None where the records do not carry them.
    token_target: Sequence[float] | None = None
    token_q: dict[float, Sequence[float]] | None = None
    decision: int | None = None

    def log_densities(self, alphas: Sequence[float], tokens: int | None) -> tuple[float, list[float]]:
        """(log p_0, [log q_a for a in alphas]) of the first ``tokens`` tokens (None: all)."""
        if tokens is None or self.token_target is None or tokens >= len(self.token_target):
            return self.logp_target, [self.logp_target if a == 0.0 else self.logq[a] for a in alphas]
        target = math.fsum(self.token_target[:tokens])
        return target, [target if a == 0.0 else math.fsum(self.token_q[a][:tokens]) for a in alphas]


@dataclass(frozen=True)
class NaturalRate:
    """A published estimate has ``rate`` and its interval; a withheld one has ``rate`` None and a
    ``reason`` (and ``hi`` alone when an upper bound can be justified)."""

    rate: float | None
    lo: float | None
    hi: float | None
    method: str | None
    reason: str | None = None
    ess: float | None = None  # mean per-prompt effective sample size
    mass: float | None = None  # mean balance weight: about 1 when the pool covers the policy
    raw_weights: dict[float, float] = field(default_factory=dict)  # proposal alpha -> mean p_0/q_k
    flagged: int = 0
    n: int = 0
    prompts: int = 0
    weights: str | None = None  # "stopping-time ..." or "whole-sequence (why)"
    decision_token: float | None = None  # mean decision token (0-based) of flags that report one
    flagged_ess: float | None = None  # effective flagged rollouts with the weights used
    flagged_ess_whole: float | None = None  # ... with whole-sequence weights, for comparison

    @property
    def published(self) -> bool:
        return self.rate is not None


def _withheld(reason: str, **diagnostics) -> NaturalRate:
    return NaturalRate(None, None, diagnostics.pop("hi", None), diagnostics.pop("method", None), reason,
                       **diagnostics)


def _weight_plan(scored: Sequence[Draw]) -> tuple[dict[int, int | None], int | None, str]:
    """Per flagged draw (by index) the tokens its weight uses (None: all), the diagnostics'
    horizon (None: whole sequences) and how the weights were chosen, in words."""
    flagged = [i for i, d in enumerate(scored) if d.flagged]
    if any(d.token_target is None or d.token_q is None for d in scored):
        return {i: None for i in flagged}, None, "whole-sequence (records without per-token densities)"
    cuts = {i: None if scored[i].decision is None else scored[i].decision + 1 for i in flagged}
    positioned = sum(c is not None for c in cuts.values())
    if not positioned:
        return cuts, None, "whole-sequence (the judge reports no decision position)"
    horizon = None if positioned < len(cuts) else max(cuts.values())
    return cuts, horizon, f"stopping-time ({positioned} of {len(cuts)} flags decided at a position)"


def _balance_log_weights(group: Sequence[Draw], alphas: list[float], share: np.ndarray,
                         tokens: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """(log balance weight, [log p_0 - log q_a]) of each draw over its first ``tokens`` tokens."""
    from scipy import special  # here, not at the top: importing scipy takes seconds (see core.stats)

    dens = [d.log_densities(alphas, t) for d, t in zip(group, tokens, strict=True)]
    logp = np.array([p for p, _ in dens])
    logq = np.array([q for _, q in dens])
    with np.errstate(invalid="ignore"):  # -inf - -inf under proposals that are not the draw's own
        return logp - special.logsumexp(logq + share, axis=1), logp[:, None] - logq


def pooled_rate(draws: Sequence[Draw], *, truncated: bool, greedy: bool = False) -> NaturalRate:
    """The pooled (balance-heuristic) estimate of the policy's flag rate; see the module doc.

    ``truncated``: the sampler uses top-k, top-p or min-p (proposals may miss policy support).
    """
    scored = [d for d in draws if d.flagged is not None]
    if greedy:
        return _withheld("greedy decoding: the policy is deterministic; read the plain rate")
    if not scored:
        return _withheld("no scored rollouts")
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for i, d in enumerate(scored):
        by_prompt[d.prompt].append(i)
    cuts, horizon, how = _weight_plan(scored)
    rates, variances, ess, mass, flagged_w, flagged_whole, proposal = [], [], [], [], [], [], []
    raw: dict[float, list[float]] = defaultdict(list)
    n_plain = 0
    for prompt, indices in sorted(by_prompt.items()):
        group = [scored[i] for i in indices]
        if len(group) < 2:
            return _withheld(f"prompt {prompt} has fewer than 2 scored rollouts")
        counts: dict[float, int] = defaultdict(int)
        for d in group:
            counts[d.alpha] += 1
        if truncated and 0.0 not in counts:
            return _withheld(
                f"top-k/top-p/min-p without plain rollouts (prompt {prompt}): an amplified sampler can give zero "
                "probability to completions the policy produces, so importance weights would miss them")
        n_plain += counts.get(0.0, 0)
        alphas = sorted(counts)
        share = np.log(np.array([counts[a] for a in alphas], dtype=float) / len(group))
        f = np.array([bool(d.flagged) for d in group], dtype=float)
        try:
            log_w, _ = _balance_log_weights(group, alphas, share, [cuts.get(i) for i in indices])
            log_w_h, log_raw = _balance_log_weights(group, alphas, share, [horizon] * len(group))
            log_w_whole, _ = _balance_log_weights(group, alphas, share, [None] * len(group))
        except KeyError as missing:
            return _withheld(f"rollouts lack a density under alpha {missing.args[0]} (not scored at every "
                             "proposal of the evaluation; e.g. recorded by an older version)")
        w, w_h = np.exp(log_w), np.exp(log_w_h)
        rates.append(float(np.mean(f * w)))
        variances.append(float(np.var(f * w, ddof=1)) / len(group))
        ess.append(effective_size(w_h))
        flagged_w.append(f * w / len(group))
        proposal.append(np.array([d.alpha for d in group]))
        flagged_whole.append(f * np.exp(log_w_whole) / len(group))
        mass.append(float(np.mean(w_h)))
        for d, row in zip(group, log_raw, strict=True):
            raw[d.alpha].append(math.exp(row[alphas.index(d.alpha)]))
    flagged = sum(1 for d in scored if d.flagged)
    decisions = [d.decision for i, d in enumerate(scored) if d.flagged and cuts[i] is not None]
    # Effective number of flagged rollouts the estimate rests on (the prompts' terms scaled as in
    # the equal-weight mean): a few heavy weights mean the sample variance has not seen the tail.
    flagged_ess = effective_size(np.concatenate(flagged_w))
    diagnostics = dict(
        ess=float(np.mean(ess)), mass=float(np.mean(mass)),
        raw_weights={a: float(np.mean(v)) for a, v in sorted(raw.items())},
        flagged=flagged, n=len(scored), prompts=len(by_prompt), weights=how,
        decision_token=float(np.mean(decisions)) if decisions else None,
        flagged_ess=flagged_ess, flagged_ess_whole=effective_size(np.concatenate(flagged_whole)),
    )
    flagged_plain = sum(1 for d in scored if d.flagged and d.alpha == 0.0)

    def withheld(reason: str, k: int = flagged_plain) -> NaturalRate:
        """Withheld, with the Clopper-Pearson upper bound of ``k`` flagged among the plain
        rollouts (valid whatever failed: they are draws from the policy itself)."""
        if not n_plain:
            return _withheld(reason, **diagnostics)
        return _withheld(f"{reason}; upper bound from {k}/{n_plain} plain", hi=clopper_pearson_upper(k, n_plain),
                         method=METHOD_BOUND, **diagnostics)

    if flagged < MIN_FLAGGED:
        # The mixture sees the behaviour at least as often as its plain share: the pool's count
        # over the plain rollouts still bounds the rate, and is tighter than the plain count alone.
        return withheld(f"{flagged} flagged rollouts in the pool (< {MIN_FLAGGED}): too few for an interval", flagged)
    if abs(diagnostics["mass"] - 1) > MASS_TOLERANCE:
        return withheld(f"mean balance weight {diagnostics['mass']:.2f}, not ~1: the proposals miss part of "
                        "the policy's mass (add plain rollouts or smaller ladder alphas)")
    overlapping = {a for a, v in diagnostics["raw_weights"].items() if v >= MIN_OVERLAP}
    seen = sum(1 for d in scored if d.flagged and d.alpha in overlapping)
    if seen < MIN_FLAGGED:
        return withheld(
            f"{seen} flagged rollouts from proposals overlapping the policy (mean raw weight >= {MIN_OVERLAP:g}; "
            f"< {MIN_FLAGGED}): the behaviour was seen only far from the policy, where weights are too "
            "heavy-tailed to estimate from")
    terms, drawn_from = np.concatenate(flagged_w), np.concatenate(proposal)
    total = terms.sum()  # 0 when every flag lies where the policy has no mass (truncation)
    share = float(terms[np.isin(drawn_from, list(overlapping))].sum() / total) if total > 0 else 0.0
    if truncated and share < MIN_OVERLAP_SHARE:
        return withheld(
            f"with top-k/top-p/min-p, flags from proposals overlapping the policy carry {share:.0%} of the estimate "
            f"(< {MIN_OVERLAP_SHARE:.0%}): the rest is amplified paths to the behaviour, the policy's own were "
            "barely sampled, so the value can be several times too low however tight its interval")
    if flagged_ess < MIN_FLAGGED_ESS:
        return withheld(f"the estimate rests on {flagged_ess:.1f} effective flagged rollouts (< {MIN_FLAGGED_ESS:g}): "
                        "a few heavily weighted rollouts carry it, so its variance is not seen")
    if sum(ess) < MIN_ESS:
        return withheld(f"effective sample size {sum(ess):.1f} < {MIN_ESS:g}: a few rollouts carry the estimate")
    rate = float(np.mean(rates))
    lo, hi = log_scale_interval(rate, math.sqrt(sum(variances)) / len(rates))  # rate > 0: >= 1 flagged
    # Unbiased is not bounded: with weights above 1 a near-certain behaviour can average past 1
    # (the full demo's late steps: 1.015). A probability is at most 1, so clipping to it only
    # moves the estimate and its interval towards the truth.
    lo, hi = min(lo, 1.0), min(hi, 1.0)
    unflagged = len(scored) - flagged
    if unflagged < MIN_FLAGGED:
        # The mirror of the rare case: with (almost) every rollout flagged, the sample variance has
        # not seen the paths that escape the behaviour (with stopping-time weights, rollouts that
        # share a flagged prefix have equal weights, and the interval would collapse to a point).
        # The pool escapes at least as often as its plain share, so the Clopper-Pearson bound of
        # (unflagged in the pool) / (plain rollouts) bounds 1 - rate; and a rate of 1 is not excluded.
        lo, hi = min(lo, 1.0 - clopper_pearson_upper(unflagged, n_plain)), 1.0
    return NaturalRate(min(rate, 1.0), lo, hi, METHOD_POOLED, **diagnostics)


def extrapolated_rate(points: Sequence[tuple[float, int, int]], *, boot: int = 2000, seed: int = 0) -> NaturalRate:
    """Flag rate at alpha 0 extrapolated from ``(alpha, flagged, scored)`` at alphas > 0.

    Weighted least squares of the empirical logit log((k + 1/2) / (n - k + 1/2)) on alpha, with
    inverse-variance weights (k + 1/2)(n - k + 1/2) / (n + 1); the interval is the 2.5-97.5%
    range over ``boot`` parametric bootstrap refits (k* ~ Binomial(n, (k + 1/2) / (n + 1)) at each
    alpha).

    Withheld unless the logit-linear shape it extrapolates is checked and not rejected: that needs
    3 or more alphas, and Pearson's lack-of-fit statistic sum (k - n p_fit)^2 / (n p_fit (1 - p_fit))
    must not exceed its chi-squared (alphas - 2 df) 95% point: a real model's flag rate can rise
    steeply at small alpha and saturate at large ones, and a straight line through such a curve
    read at alpha 0 is far off with an interval that excludes the truth (README "Reading the
    results" has the benchmark).
    """
    from scipy import special, stats

    points = [(float(a), int(k), int(n)) for a, k, n in points if a > 0 and n > 0]
    alphas = len({a for a, _, _ in points})
    if alphas < 3:
        return _withheld(f"needs flag rates at 3 or more alphas > 0 (has {alphas}): with fewer, the "
                         "logit-linear shape it extrapolates cannot be checked", method=METHOD_EXTRAPOLATED)
    alpha = np.array([a for a, _, _ in points])
    k = np.array([k for _, k, _ in points], dtype=float)
    n = np.array([n for _, _, n in points], dtype=float)
    if not k.any():
        return _withheld("no flagged rollouts at any alpha", method=METHOD_EXTRAPOLATED)

    def fit(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(intercept, slope) of the logit-linear fit for each row of counts ``k`` ([..., alphas])."""
        y = np.log((k + 0.5) / (n - k + 0.5))  # the empirical logit
        return weighted_line(alpha, y, (k + 0.5) * (n - k + 0.5) / (n + 1))

    intercept, slope = fit(k)
    fitted = special.expit(intercept + slope * alpha)
    # Pearson's statistic over the alphas' binomial cells (scipy's chisquare takes one multinomial).
    lack_of_fit = float(np.sum((k - n * fitted) ** 2 / (n * fitted * (1 - fitted))))
    p_fit = float(stats.chi2.sf(lack_of_fit, len(points) - 2))
    if p_fit < 0.05:
        return _withheld(f"the flag rate is not logit-linear in alpha (lack of fit chi2 {lack_of_fit:.1f} on "
                         f"{len(points) - 2} df, p = {p_fit:.2g}), so a line read at alpha 0 would mislead",
                         method=METHOD_EXTRAPOLATED, flagged=int(k.sum()), n=int(n.sum()))
    rng = np.random.default_rng(seed)
    # Resampling at (k + 1/2) / (n + 1), not k / n: a count of 0 would otherwise never vary.
    resampled = rng.binomial(n.astype(int), (k + 0.5) / (n + 1), size=(boot, len(n))).astype(float)
    lo, hi = np.percentile(special.expit(fit(resampled)[0]), [2.5, 97.5])
    return NaturalRate(float(special.expit(intercept)), float(lo), float(hi), METHOD_EXTRAPOLATED,
                       flagged=int(k.sum()), n=int(n.sum()))
