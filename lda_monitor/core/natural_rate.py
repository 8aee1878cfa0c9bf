"""How often the policy itself (alpha = 0, sampled as the user samples it) shows the flagged
behaviour, estimated from the rollouts an evaluation already draws. numpy and scipy; no I/O.

**Pooled estimate (multiple importance sampling, balance heuristic).** Every rollout's sequence
density is exact under any alpha (each decode step is normalised), so an evaluation's rollouts
- amplified at the detection alpha, plain (alpha 0), and an optional *ladder* of small alphas -
are draws from known proposals q_k with shares c_k = n_k / N. With the target p_0 (the policy
with the user's temperature and truncation) the balance heuristic gives, per prompt,

    p_hat = (1/N) sum_i f_i w_i,    w_i = p_0(y_i) / sum_k c_k q_k(y_i),

unbiased for P_0(flagged) wherever the mixture covers p_0's support. The suite's rate is the
equal-weight mean over prompts. Its standard error uses the pooled sample variance of f_i w_i per
prompt, which over-estimates the variance of a stratified draw by the spread between the
proposals' means (conservative): SE = sqrt(sum_j var_j) / J. The 95% interval is normal on the log
scale (:func:`~lda_monitor.core.stats.log_scale_interval`, capped at 1): a weighted estimate of a
small rate is right-skewed, and its sample variance is small exactly when it under-estimates, so a
symmetric p_hat +- 1.96 SE misses the truth from below more often than 5%.

Why a ladder: the detection alpha's samples barely overlap the policy, so alone they carry almost
no information about p_0; small alphas overlap both p_0 and each other, and the balance heuristic
lets every rollout count under the proposal that explains it best.

**Stopping-time weights.** A judge that reports where its verdict was decided (a pattern judge:
the token that completed the first flagging text, :mod:`lda_monitor.core.decision`) lets a
flagged rollout's weight use the densities of its tokens up to that decision token tau only,
w_tau = p_0(y_<=tau) / sum_k c_k q_k(y_<=tau). The decision token is a stopping time, the flag is
final there, and under the mixture q the prefix ratio L_t = p_0(y_<=t) / q(y_<=t) is a martingale
with E_q[L_T | y_<=tau] = L_tau (optional stopping). So E_q[f w_tau] = E_q[f L_T] = P_0(flagged):
unbiased as before, and f w_tau = E_q[f L_T | y_<=tau] has variance at most that of f L_T. The
tokens after the decision say nothing about the verdict, yet their ratios multiply into a
whole-sequence weight whose spread grows with length. Flags without a position (an LLM judge) and
records without per-token densities keep whole-sequence weights, and the estimate says so
(``weights``). The diagnostics that use every rollout's weight (mass, ESS, raw weights, overlap)
use weights truncated at one fixed *horizon*, the furthest token any flagged rollout's weight
reaches (a fixed horizon is a stopping time too, so the mass check still tests E_q[w_H] = 1 over
exactly the tokens the estimate's weights depend on).

**Support (truncation).** With top-k / top-p / min-p an amplified proposal can give zero
probability to a completion the policy produces, and importance sampling over such proposals is
biased downward whatever the sample size. With plain rollouts in the pool the target is itself a
mixture component, so sum_k c_k q_k >= c_0 p_0 > 0 wherever p_0 > 0 (every weight at most 1/c_0).

**When it is withheld.** Each reliability rule is a function below (``*_rule``: the reason to
withhold, or None), applied by :func:`pooled_rate` in this order: :func:`greedy_rule`,
:func:`scored_rule`, :func:`prompt_size_rule`, :func:`support_rule`, :func:`proposal_scores_rule`,
:func:`too_few_flags_rule`, :func:`mass_rule`, :func:`overlap_rule`, :func:`truncation_share_rule`,
:func:`flagged_ess_rule`, :func:`ess_rule`. A withheld estimate keeps a Clopper-Pearson upper bound
from the plain rollouts (:func:`plain_upper_bound`). A published one is capped at 1
(:func:`probability_cap`) and widened near saturation (:func:`saturation_interval`). The
measurements each threshold was set on, with the commands that reproduce them, are in
``docs/estimate-rules.md``.

Diagnostics reported with every estimate: per-prompt ESS (their mean is published), the mean
balance weight, and the mean raw weight p_0 / q_k of each proposal's own rollouts, which is about
1 when q_k alone covers the policy and falls towards 0 as its overlap with the policy vanishes.

Unscored verdicts (a judge failure, ``flagged`` None) are excluded, and the shares c_k are
counted over scored rollouts only: unbiased when failures do not depend on the completion (an
outage); a judge that fails on exactly the flagged completions biases every rate, this one too.

**Extrapolated estimate (sweeps).** :func:`extrapolated_rate` fits the empirical logit of the
flag rate against alpha over the alphas > 0 of an evaluation by weighted least squares and reads
the fit at alpha 0, with a parametric bootstrap interval (the logit-path-extrapolation idea). It
needs no densities and works for any sampler, but it assumes the logit-linear shape, so it is
withheld unless that shape is checked (:func:`alphas_rule`) and not rejected
(:func:`lack_of_fit_rule`). Even a passing fit extrapolates beyond the data; the pooled estimate
is unbiased and should be preferred when published.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .stats import clopper_pearson_upper, effective_size, log_scale_interval, weighted_line

# The rules' thresholds (docs/estimate-rules.md: what each was set on, and how to re-measure it).
MIN_FLAGGED = 3  # flagged (and unflagged) rollouts in the pool for a normal interval
MIN_FLAGGED_ESS = 5.0  # effective flagged rollouts: the n p >= 5 rule of thumb for a normal interval
MIN_OVERLAP = 0.1  # mean raw weight p_0/q_k for a proposal to count as overlapping the policy
MIN_OVERLAP_SHARE = 2 / 3  # with truncation: the share of the estimate flags from overlapping proposals carry
MIN_ESS = 10.0  # summed per-prompt effective sample size
MASS_TOLERANCE = 0.25  # how far the mean balance weight (an estimate of 1) may be from 1
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
                         *cuts: Sequence[int | None]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per list of ``cuts`` (the tokens each draw's weight uses; None: all), the (log balance weight,
    [log p_0 - log q_a]) of each draw. One logsumexp call for all of them: scipy's call has a fixed
    cost (its array-API checks) that dominates at these sizes, and a summary needs three per prompt."""
    from scipy import special  # here, not at the top: importing scipy takes seconds (see core.stats)

    dens = [d.log_densities(alphas, t) for tokens in cuts for d, t in zip(group, tokens, strict=True)]
    logp = np.array([p for p, _ in dens])
    logq = np.array([q for _, q in dens])
    with np.errstate(invalid="ignore"):  # -inf - -inf under proposals that are not the draw's own
        log_w, log_raw = logp - special.logsumexp(logq + share, axis=1), logp[:, None] - logq
    n = len(group)
    return [(log_w[i * n:(i + 1) * n], log_raw[i * n:(i + 1) * n]) for i in range(len(cuts))]


# ----- the reliability rules: each returns why the estimate must be withheld, or None ------------

def greedy_rule(greedy: bool) -> str | None:
    """Guards against estimating a rate for a deterministic policy, whose one completion per prompt
    the plain rate already reads."""
    return "greedy decoding: the policy is deterministic; read the plain rate" if greedy else None


def scored_rule(scored: int) -> str | None:
    """Guards against an estimate with nothing under it: every verdict unscored (a judge failure) or no rollouts."""
    return "no scored rollouts" if not scored else None


def prompt_size_rule(prompt: int, scored: int) -> str | None:
    """Guards against a prompt whose sample variance cannot be computed (fewer than 2 scored rollouts)."""
    return f"prompt {prompt} has fewer than 2 scored rollouts" if scored < 2 else None


def support_rule(prompt: int, plain: int, truncated: bool) -> str | None:
    """Guards against importance weights that cannot see completions the policy produces but a
    truncated amplified sampler never draws (missing mass is invisible in samples)."""
    if truncated and not plain:
        return (f"top-k/top-p/min-p without plain rollouts (prompt {prompt}): an amplified sampler can give zero "
                "probability to completions the policy produces, so importance weights would miss them")
    return None


def proposal_scores_rule(missing_alpha: float | None) -> str | None:
    """Guards against weighting rollouts that were not scored under every proposal of their pool
    (records of an older version), whose balance weights cannot be computed."""
    if missing_alpha is None:
        return None
    return (f"rollouts lack a density under alpha {missing_alpha} (not scored at every "
            "proposal of the evaluation; e.g. recorded by an older version)")


def too_few_flags_rule(flagged: int) -> str | None:
    """Guards against a normal interval from fewer than ``MIN_FLAGGED`` flagged rollouts, which
    under-covers."""
    if flagged < MIN_FLAGGED:
        return f"{flagged} flagged rollouts in the pool (< {MIN_FLAGGED}): too few for an interval"
    return None


def mass_rule(mass: float) -> str | None:
    """Guards against proposals that miss (or double-count) part of the policy's mass: the mean
    balance weight estimates P_0(anything) = 1."""
    if abs(mass - 1) > MASS_TOLERANCE:
        return (f"mean balance weight {mass:.2f}, not ~1: the proposals miss part of "
                "the policy's mass (add plain rollouts or smaller ladder alphas)")
    return None


def overlapping_proposals(raw_weights: dict[float, float]) -> set[float]:
    """The proposals whose own rollouts' mean raw weight p_0/q_k is at least ``MIN_OVERLAP`` (plain
    always is): those that overlap the policy."""
    return {a for a, v in raw_weights.items() if v >= MIN_OVERLAP}


def overlap_rule(flags_overlapping: int) -> str | None:
    """Guards against a behaviour seen only far from the policy (at a detection alpha), where
    weights spread over orders of magnitude and an estimate can be far off while looking precise."""
    if flags_overlapping < MIN_FLAGGED:
        return (f"{flags_overlapping} flagged rollouts from proposals overlapping the policy (mean raw weight >= "
                f"{MIN_OVERLAP:g}; < {MIN_FLAGGED}): the behaviour was seen only far from the policy, where weights "
                "are too heavy-tailed to estimate from")
    return None


def overlap_share(terms: np.ndarray, drawn_from: np.ndarray, overlapping: set[float]) -> float:
    """The share of the estimate (its per-rollout terms f w / N_j) carried by rollouts drawn from
    ``overlapping`` proposals; 0 when every flag lies where the policy has no mass."""
    total = terms.sum()
    return float(terms[np.isin(drawn_from, list(overlapping))].sum() / total) if total > 0 else 0.0


def truncation_share_rule(share: float, truncated: bool) -> str | None:
    """Guards against, under truncation, an estimate carried by the detection alpha's paths to the
    behaviour while the policy's own paths were barely sampled (a tight interval several times too
    low). Not applied without truncation, where those paths can be the policy's own made likelier."""
    if truncated and share < MIN_OVERLAP_SHARE:
        return (f"with top-k/top-p/min-p, flags from proposals overlapping the policy carry {share:.0%} of the "
                f"estimate (< {MIN_OVERLAP_SHARE:.0%}): the rest is amplified paths to the behaviour, the policy's "
                "own were barely sampled, so the value can be several times too low however tight its interval")
    return None


def flagged_ess_rule(flagged_ess: float) -> str | None:
    """Guards against an estimate carried by a few heavily weighted flagged rollouts, whose spread
    the sample variance has not seen."""
    if flagged_ess < MIN_FLAGGED_ESS:
        return (f"the estimate rests on {flagged_ess:.1f} effective flagged rollouts (< {MIN_FLAGGED_ESS:g}): "
                "a few heavily weighted rollouts carry it, so its variance is not seen")
    return None


def ess_rule(ess_sum: float) -> str | None:
    """Guards against a pool whose weights leave few effective rollouts overall."""
    if ess_sum < MIN_ESS:
        return f"effective sample size {ess_sum:.1f} < {MIN_ESS:g}: a few rollouts carry the estimate"
    return None


# ----- what is published -------------------------------------------------------------------------

def plain_upper_bound(flagged: int, plain: int) -> float:
    """Guards a withheld estimate's bound against any failed rule: the Clopper-Pearson upper bound of
    ``flagged`` over the ``plain`` rollouts, which are draws from the policy itself. Used with the pool's
    flagged count when too few are flagged: the mixture sees the behaviour at least as often as its
    plain share, so that count over the plain rollouts still bounds the rate, more tightly."""
    return clopper_pearson_upper(flagged, plain)


def probability_cap(rate: float, lo: float, hi: float) -> tuple[float, float, float]:
    """Guards against publishing a probability above 1: an unbiased estimate with weights above 1
    can average past 1 for a near-certain behaviour, and capping only moves it towards the truth."""
    return min(rate, 1.0), min(lo, 1.0), min(hi, 1.0)


def saturation_interval(lo: float, hi: float, unflagged: int, plain: int) -> tuple[float, float]:
    """Guards against an interval that collapses near saturation: with fewer than ``MIN_FLAGGED``
    unflagged rollouts the sample variance has not seen the paths that escape the behaviour, so the
    interval reaches 1 and down to 1 - the Clopper-Pearson bound of (unflagged in the pool) / (plain)."""
    if unflagged >= MIN_FLAGGED:
        return lo, hi
    return min(lo, 1.0 - clopper_pearson_upper(unflagged, plain)), 1.0


# ----- the pooled estimate ---------------------------------------------------------------------

@dataclass
class _PromptTerms:
    """One prompt's contribution: its estimate and variance, and what the diagnostics read."""

    rate: float
    variance: float
    ess: float  # effective sample size of the horizon weights
    mass: float  # mean horizon weight
    flagged_terms: np.ndarray  # f w / N with the weights used
    flagged_whole: np.ndarray  # f w / N with whole-sequence weights
    drawn_from: np.ndarray  # each rollout's proposal alpha
    raw: list[tuple[float, float]]  # (proposal alpha, raw weight p_0/q of its own rollout)
    plain: int


def _prompt_terms(group: Sequence[Draw], cuts: Sequence[int | None], horizon: int | None) -> _PromptTerms:
    """The balance-weighted terms of one prompt's rollouts; ``cuts``: the tokens each flagged
    weight uses. Raises KeyError (the alpha) when a rollout lacks a density under a proposal."""
    counts: dict[float, int] = defaultdict(int)
    for d in group:
        counts[d.alpha] += 1
    alphas = sorted(counts)
    share = np.log(np.array([counts[a] for a in alphas], dtype=float) / len(group))
    f = np.array([bool(d.flagged) for d in group], dtype=float)
    (log_w, _), (log_w_h, log_raw), (log_w_whole, _) = _balance_log_weights(
        group, alphas, share, cuts, [horizon] * len(group), [None] * len(group))
    w, w_h = np.exp(log_w), np.exp(log_w_h)
    return _PromptTerms(
        rate=float(np.mean(f * w)), variance=float(np.var(f * w, ddof=1)) / len(group),
        ess=effective_size(w_h), mass=float(np.mean(w_h)),
        flagged_terms=f * w / len(group), flagged_whole=f * np.exp(log_w_whole) / len(group),
        drawn_from=np.array([d.alpha for d in group]),
        raw=[(d.alpha, math.exp(row[alphas.index(d.alpha)])) for d, row in zip(group, log_raw, strict=True)],
        plain=counts.get(0.0, 0))


def _pool_diagnostics(scored: Sequence[Draw], prompts: Sequence[_PromptTerms], cuts: dict[int, int | None],
                      how: str) -> dict:
    """What every estimate reports, published or withheld (see :class:`NaturalRate`)."""
    raw: dict[float, list[float]] = defaultdict(list)
    for terms in prompts:
        for alpha, weight in terms.raw:
            raw[alpha].append(weight)
    decisions = [d.decision for i, d in enumerate(scored) if d.flagged and cuts[i] is not None]
    return dict(
        ess=float(np.mean([t.ess for t in prompts])), mass=float(np.mean([t.mass for t in prompts])),
        raw_weights={a: float(np.mean(v)) for a, v in sorted(raw.items())},
        flagged=sum(1 for d in scored if d.flagged), n=len(scored), prompts=len(prompts), weights=how,
        decision_token=float(np.mean(decisions)) if decisions else None,
        # Effective number of flagged rollouts the estimate rests on (the prompts' terms scaled as in
        # the equal-weight mean): a few heavy weights mean the sample variance has not seen the tail.
        flagged_ess=effective_size(np.concatenate([t.flagged_terms for t in prompts])),
        flagged_ess_whole=effective_size(np.concatenate([t.flagged_whole for t in prompts])),
    )


def _withheld_with_bound(reason: str, k: int, flagged_plain: int, plain: int, diagnostics: dict) -> NaturalRate:
    """Withheld, with the upper bound of ``k`` flagged over the ``plain`` rollouts when there are
    any (:func:`plain_upper_bound`); the reason names the counts it used."""
    if not plain:
        return _withheld(reason, **diagnostics)
    counted = f"{k}/{plain} plain" if k == flagged_plain else (
        f"{k} flagged in the whole pool over {plain} plain rollouts (plain alone: {flagged_plain}/{plain})")
    return _withheld(f"{reason}; upper bound from {counted}", hi=plain_upper_bound(k, plain), method=METHOD_BOUND,
                     **diagnostics)


def pooled_rate(draws: Sequence[Draw], *, truncated: bool, greedy: bool = False) -> NaturalRate:
    """The pooled (balance-heuristic) estimate of the policy's flag rate; see the module doc.

    ``truncated``: the sampler uses top-k, top-p or min-p (proposals may miss policy support).
    """
    scored = [d for d in draws if d.flagged is not None]
    if reason := greedy_rule(greedy):
        return _withheld(reason)
    if reason := scored_rule(len(scored)):
        return _withheld(reason)
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for i, d in enumerate(scored):
        by_prompt[d.prompt].append(i)
    cuts, horizon, how = _weight_plan(scored)
    prompts: list[_PromptTerms] = []
    for prompt, indices in sorted(by_prompt.items()):
        group = [scored[i] for i in indices]
        if reason := (prompt_size_rule(prompt, len(group))
                      or support_rule(prompt, sum(d.alpha == 0.0 for d in group), truncated)):
            return _withheld(reason)
        try:
            prompts.append(_prompt_terms(group, [cuts.get(i) for i in indices], horizon))
        except KeyError as missing:
            return _withheld(proposal_scores_rule(missing.args[0]))
    diagnostics = _pool_diagnostics(scored, prompts, cuts, how)
    flagged, n_plain = diagnostics["flagged"], sum(t.plain for t in prompts)
    flagged_plain = sum(1 for d in scored if d.flagged and d.alpha == 0.0)
    if reason := too_few_flags_rule(flagged):
        return _withheld_with_bound(reason, flagged, flagged_plain, n_plain, diagnostics)
    overlapping = overlapping_proposals(diagnostics["raw_weights"])
    flags_overlapping = sum(1 for d in scored if d.flagged and d.alpha in overlapping)
    share = overlap_share(np.concatenate([t.flagged_terms for t in prompts]),
                          np.concatenate([t.drawn_from for t in prompts]), overlapping)
    if reason := (mass_rule(diagnostics["mass"]) or overlap_rule(flags_overlapping)
                  or truncation_share_rule(share, truncated) or flagged_ess_rule(diagnostics["flagged_ess"])
                  or ess_rule(sum(t.ess for t in prompts))):
        return _withheld_with_bound(reason, flagged_plain, flagged_plain, n_plain, diagnostics)
    rate = float(np.mean([t.rate for t in prompts]))
    lo, hi = log_scale_interval(rate, math.sqrt(sum(t.variance for t in prompts)) / len(prompts))  # >= 3 flags: > 0
    rate, lo, hi = probability_cap(rate, lo, hi)
    lo, hi = saturation_interval(lo, hi, len(scored) - flagged, n_plain)
    return NaturalRate(rate, lo, hi, METHOD_POOLED, **diagnostics)


# ----- the extrapolated estimate ----------------------------------------------------------------

def alphas_rule(alphas: int) -> str | None:
    """Guards against extrapolating a shape that cannot be checked: a line through 2 alphas always fits."""
    if alphas < 3:
        return (f"needs flag rates at 3 or more alphas > 0 (has {alphas}): with fewer, the "
                "logit-linear shape it extrapolates cannot be checked")
    return None


def lack_of_fit_rule(statistic: float, df: int, p_value: float) -> str | None:
    """Guards against reading at alpha 0 a line through a curve that is not logit-linear (a real
    model's rate can rise steeply at small alpha and saturate), far off with a confident interval."""
    if p_value < 0.05:
        return (f"the flag rate is not logit-linear in alpha (lack of fit chi2 {statistic:.1f} on "
                f"{df} df, p = {p_value:.2g}), so a line read at alpha 0 would mislead")
    return None


def extrapolated_rate(points: Sequence[tuple[float, int, int]], *, boot: int = 2000, seed: int = 0) -> NaturalRate:
    """Flag rate at alpha 0 extrapolated from ``(alpha, flagged, scored)`` at alphas > 0.

    Weighted least squares of the empirical logit log((k + 1/2) / (n - k + 1/2)) on alpha, with
    inverse-variance weights (k + 1/2)(n - k + 1/2) / (n + 1); the interval is the 2.5-97.5%
    range over ``boot`` parametric bootstrap refits (k* ~ Binomial(n, (k + 1/2) / (n + 1)) at each
    alpha). Withheld by :func:`alphas_rule` and :func:`lack_of_fit_rule` (Pearson's statistic
    sum (k - n p_fit)^2 / (n p_fit (1 - p_fit)) against its chi-squared (alphas - 2 df) 95% point).
    """
    from scipy import special, stats

    points = [(float(a), int(k), int(n)) for a, k, n in points if a > 0 and n > 0]
    if reason := alphas_rule(len({a for a, _, _ in points})):
        return _withheld(reason, method=METHOD_EXTRAPOLATED)
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
    df = len(points) - 2
    if reason := lack_of_fit_rule(lack_of_fit, df, float(stats.chi2.sf(lack_of_fit, df))):
        return _withheld(reason, method=METHOD_EXTRAPOLATED, flagged=int(k.sum()), n=int(n.sum()))
    rng = np.random.default_rng(seed)
    # Resampling at (k + 1/2) / (n + 1), not k / n: a count of 0 would otherwise never vary.
    resampled = rng.binomial(n.astype(int), (k + 0.5) / (n + 1), size=(boot, len(n))).astype(float)
    lo, hi = np.percentile(special.expit(fit(resampled)[0]), [2.5, 97.5])
    return NaturalRate(float(special.expit(intercept)), float(lo), float(hi), METHOD_EXTRAPOLATED,
                       flagged=int(k.sum()), n=int(n.sum()))
