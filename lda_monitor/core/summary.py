"""From rollout records to the numbers people read: one row per evaluation x alpha x judge x
category, and the flat metric names the callback logs.

Rows are computed from records alone, so the callback's logged metrics, the auditor's
``summary.json`` and a recomputation from ``rollouts.jsonl`` are the same numbers by
construction. Rates are per judge, never averaged across judges; unscored verdicts are counted
and excluded from denominators.

The natural-rate estimate of an amplified alpha's row pools that alpha's rollouts with the plain
and ladder rollouts scored at it (:mod:`lda_monitor.core.natural_rate`); a withheld estimate leaves
``natural_rate`` None and says why in ``natural_rate_reason``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from .natural_rate import METHOD_EXTRAPOLATED, Draw, NaturalRate, extrapolated_rate, pooled_rate
from .records import KIND_AMPLIFIED, KIND_ESTIMATE, KIND_PLAIN, RolloutRecord
from .stats import amplification_factor, coherence, flag_rate, policy_logprobs


@dataclass
class SummaryRow:
    step: int
    checkpoint: str | None
    alpha: float
    judge: str
    category: str | None  # None: all prompts
    n: int
    flagged: int
    unscored: int
    flag_rate: float | None
    flag_rate_lo: float
    flag_rate_hi: float
    n_plain: int
    flagged_plain: int
    unscored_plain: int
    flag_rate_plain: float | None
    flag_rate_plain_lo: float
    flag_rate_plain_hi: float
    amplification: float | None
    amplification_lo: float | None
    amplification_hi: float | None
    coherence: float
    coherence_plain: float
    kl_amp_after: float
    natural_rate: float | None
    natural_rate_lo: float | None
    natural_rate_hi: float | None  # alone (rate None): a justified upper bound
    natural_rate_ess: float | None
    natural_rate_method: str | None
    natural_rate_reason: str | None  # why the estimate is withheld
    natural_rate_mass: float | None  # mean balance weight, ~1 when the pool covers the policy
    natural_rate_raw_weights: str | None  # "alpha:mean p_0/q_alpha" of each proposal's own rollouts
    natural_rate_extrapolated: float | None
    natural_rate_extrapolated_lo: float | None
    natural_rate_extrapolated_hi: float | None
    natural_rate_extrapolated_reason: str | None
    tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def _flags(records: Sequence[RolloutRecord], judge: str) -> list[bool | None]:
    out = []
    for r in records:
        verdict = r.verdict(judge)
        out.append(None if verdict is None else verdict.flagged)
    return out


def _token_weighted_kl(records: Sequence[RolloutRecord]) -> float:
    tokens = sum(r.num_tokens for r in records)
    if not tokens:
        return float("nan")
    return sum((r.kl_amp_after or 0.0) * r.num_tokens for r in records) / tokens


def _has_densities(amp: Sequence[RolloutRecord]) -> bool:
    """Whether the rollouts were scored under every proposal (the pooled estimate can run)."""
    return bool(amp) and all(r.proposal_logprobs is not None for r in amp)


NOT_SCORED = NaturalRate(None, None, None, None, "rollouts not scored for a natural-rate estimate "
                         "(natural_rate off, or recorded by an older version)")


def _natural(amp: Sequence[RolloutRecord], pool: Sequence[RolloutRecord], judge: str) -> NaturalRate:
    """The pooled estimate of rollouts that carry their densities (see :func:`_has_densities`)."""
    sampler = amp[0].sampler or {}
    truncated = bool(sampler.get("top_k") or sampler.get("top_p", 1.0) < 1.0 or sampler.get("min_p"))
    draws = [
        Draw(prompt=r.prompt_index, alpha=0.0 if r.kind == KIND_PLAIN else r.alpha, flagged=flag,
             logp_target=sum(r.logprob_after), logq={a: lp for a, lp in r.proposal_logprobs or ()})
        for r, flag in zip(pool, _flags(pool, judge), strict=True)
    ]
    return pooled_rate(draws, truncated=truncated, greedy=bool(sampler.get("greedy")))


# Where the rollouts carry densities the pooled estimate is the measurement (published, or
# withheld with a bound); the extrapolation is then withheld, not offered beside it: on the real
# model (natural_rate_bench, steps 15-16) the fits that passed its lack-of-fit test still read
# 5.5-6.4x above the brute-force rate, with intervals excluding it.
EXTRAPOLATION_SUPERSEDED = ("the rollouts carry their densities, so the pooled estimate (natural_rate) is the "
                            "measurement; the logit extrapolation is for rollouts without them")


def extrapolated_from_records(points: Sequence[RolloutRecord], judge: str) -> NaturalRate:
    """:func:`~lda_monitor.core.natural_rate.extrapolated_rate` over the scored verdicts of
    ``judge`` at each alpha of ``points`` (alpha 0 is left out by the fit)."""
    by_alpha: dict[float, list[bool | None]] = defaultdict(list)
    for r, flag in zip(points, _flags(points, judge), strict=True):
        by_alpha[r.alpha].append(flag)
    counts = [(a, *_scored_counts(flags)) for a, flags in sorted(by_alpha.items())]
    return extrapolated_rate(counts)


def _scored_counts(flags: Sequence[bool | None]) -> tuple[int, int]:
    rate, _ = flag_rate(flags)
    return rate.k, rate.n


def _row(step, checkpoint, alpha, judge, category, amp, plain, pool, sweep) -> SummaryRow:
    """``pool``: the rollouts the natural rate pools for this alpha; ``sweep``: the rollouts at
    every alpha > 0 of the evaluation (amplified and ladder), for the extrapolation."""
    amp_rate, amp_unscored = flag_rate(_flags(amp, judge))
    plain_rate, plain_unscored = flag_rate(_flags(plain, judge))
    factor = amplification_factor(amp_rate, plain_rate) if plain else None
    if _has_densities(amp):
        natural = _natural(amp, pool, judge)
        extrapolated = NaturalRate(None, None, None, METHOD_EXTRAPOLATED, EXTRAPOLATION_SUPERSEDED)
    else:
        natural, extrapolated = NOT_SCORED, extrapolated_from_records(sweep, judge)
    return SummaryRow(
        step=step,
        checkpoint=checkpoint,
        alpha=alpha,
        judge=judge,
        category=category,
        n=amp_rate.n,
        flagged=amp_rate.k,
        unscored=amp_unscored,
        flag_rate=amp_rate.rate,
        flag_rate_lo=amp_rate.lo,
        flag_rate_hi=amp_rate.hi,
        n_plain=plain_rate.n,
        flagged_plain=plain_rate.k,
        unscored_plain=plain_unscored,
        flag_rate_plain=plain_rate.rate,
        flag_rate_plain_lo=plain_rate.lo,
        flag_rate_plain_hi=plain_rate.hi,
        amplification=factor.point if factor else None,
        amplification_lo=factor.lo if factor else None,
        amplification_hi=factor.hi if factor else None,
        coherence=coherence([policy_logprobs(r) for r in amp]),
        coherence_plain=coherence([policy_logprobs(r) for r in plain]),
        kl_amp_after=_token_weighted_kl(amp),
        natural_rate=natural.rate,
        natural_rate_lo=natural.lo,
        natural_rate_hi=natural.hi,
        natural_rate_ess=natural.ess,
        natural_rate_method=natural.method,
        natural_rate_reason=natural.reason,
        natural_rate_mass=natural.mass,
        natural_rate_raw_weights=" ".join(f"{a:g}:{w:.3g}" for a, w in natural.raw_weights.items()) or None,
        natural_rate_extrapolated=extrapolated.rate,
        natural_rate_extrapolated_lo=extrapolated.lo,
        natural_rate_extrapolated_hi=extrapolated.hi,
        natural_rate_extrapolated_reason=extrapolated.reason,
        tokens=sum(r.num_tokens for r in amp),
    )


def _distinct(records: Sequence[RolloutRecord]) -> list[RolloutRecord]:
    """One record per draw. An audit sweep samples the plain control once per alpha on the same
    random streams, so its copies are one draw: counted twice they would shrink the plain rate's
    interval as if twice as many rollouts had been seen."""
    seen: set[tuple] = set()
    out = []
    for r in records:
        key = (r.kind, r.alpha, r.prompt_index, r.sample_index, r.seed)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def summarize(records: Iterable[RolloutRecord]) -> list[SummaryRow]:
    """Rows for every (step, checkpoint) x amplified alpha x judge x category (None = all)."""
    groups: dict[tuple, dict[str, list[RolloutRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[(r.step, r.checkpoint)][r.kind].append(r)
    rows = []
    for (step, checkpoint), kinds in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        amplified, plain_copies = kinds.get(KIND_AMPLIFIED, []), kinds.get(KIND_PLAIN, [])
        plain = _distinct(plain_copies)
        judges = sorted({name for r in amplified + plain for name in r.verdicts})
        categories = sorted({r.category for r in amplified if r.category is not None})
        for alpha in sorted({r.alpha for r in amplified}):
            amp_alpha = [r for r in amplified if r.alpha == alpha]
            # Plain and ladder rollouts of the evaluation at this alpha are the ones scored at it
            # (an audit sweep repeats them per alpha, each copy scored at its own alpha).
            companions = [r for r in plain_copies + kinds.get(KIND_ESTIMATE, []) if _scored_at(r, alpha)]
            pool = amp_alpha + companions
            sweep = amplified + [r for r in companions if r.kind == KIND_ESTIMATE]
            for judge in judges:
                for cat in [None, *categories]:
                    def of(rs, cat=cat):
                        return rs if cat is None else [r for r in rs if r.category == cat]

                    rows.append(_row(step, checkpoint, alpha, judge, cat, of(amp_alpha), of(plain), of(pool),
                                     of(sweep)))
    return rows


def _scored_at(record: RolloutRecord, alpha: float) -> bool:
    return any(a == alpha for a, _ in record.proposal_logprobs or ())


_ROW_METRICS = (
    "flag_rate", "flag_rate_lo", "flag_rate_hi", "flagged", "n", "unscored",
    "flag_rate_plain", "flag_rate_plain_lo", "flag_rate_plain_hi", "flagged_plain", "n_plain",
    "unscored_plain", "amplification", "amplification_lo", "natural_rate", "natural_rate_lo",
    "natural_rate_hi", "natural_rate_ess", "natural_rate_extrapolated", "natural_rate_extrapolated_lo",
    "natural_rate_extrapolated_hi",
)


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isinf(value))


def flat_metrics(rows: Sequence[SummaryRow], primary_judge: str, prefix: str = "lda") -> dict[str, float]:
    """Scalar metrics for loggers. The primary judge's numbers are ``lda/<metric>``; every other
    judge (a composition's members) gets ``lda/<judge>/<metric>``; categories insert
    ``by_category/<category>/`` before the metric. Undefined values (no scored rollouts, plain rate 0) are left out rather
    than logged as a misleading 0."""
    out: dict[str, float] = {}
    for row in rows:
        parts = [prefix] + ([] if row.judge == primary_judge else [row.judge])
        if row.category is not None:
            parts += ["by_category", row.category]
        base = "/".join(parts)
        for name in _ROW_METRICS:
            value = getattr(row, name)
            if _finite(value):
                out[f"{base}/{name}"] = float(value)
        if row.judge == primary_judge and row.category is None:
            out[f"{prefix}/alpha"] = row.alpha
            for name in ("coherence", "coherence_plain", "kl_amp_after"):
                value = getattr(row, name)
                if value == value:  # not NaN
                    out[f"{prefix}/{name}"] = value
    return out


def json_ready(value):
    """``value`` with every float JSON can hold: ``summary.json`` must parse everywhere, and
    JavaScript's ``JSON.parse`` rejects ``NaN`` and ``Infinity``. NaN (undefined: no tokens)
    becomes null; an infinite bound (the amplification's upper bound when the plain rate's
    lower bound is 0) becomes the string "inf" (or "-inf"), kept apart from "unknown"."""
    if isinstance(value, float):
        if value != value:
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
