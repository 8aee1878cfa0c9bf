"""From rollout records to the numbers people read: one row per evaluation x alpha x judge x
category, typed (a rate with its interval is one value), and the flat names derived from it.

Rows are computed from records alone, so the callback's logged metrics, the auditor's
``summary.json`` and a recomputation from ``rollouts.jsonl`` are the same numbers by
construction. Rates are per judge, never averaged across judges; unscored verdicts are counted
and excluded from denominators.

The natural-rate estimate of an amplified alpha's row pools that alpha's rollouts with the plain
and ladder rollouts scored at it (:mod:`lda_monitor.core.natural_rate`); a withheld estimate leaves
its value None and says why in its ``reason``.
"""

from __future__ import annotations

import functools
import math
import typing
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass

from .estimate_choice import BOTH_LEVEL, choose
from .natural_rate import METHOD_EXTRAPOLATED, Draw, NaturalRate, extrapolated_rate, pooled_rate
from .records import KIND_AMPLIFIED, KIND_ESTIMATE, KIND_PLAIN, RolloutRecord, distinct_draws
from .stats import (
    LEVEL,
    Interval,
    amplification_factor,
    coherence,
    flag_rate,
    policy_logprobs,
    rate_estimate,
    token_weighted_kl,
)
from .stratified import plain_strata, stratified_rate

# The row is typed data: a rate with its interval is one value. Its flat names (the ``lda/...``
# metrics, the columns of summary.json and summary.csv, the docs' metric table) are derived
# from the fields below by :func:`flat_fields`, never written out again:
# * a plain field is one column of its own name;
# * an :class:`~lda_monitor.core.stats.Interval` field NAME is three: NAME, NAME_lo, NAME_hi;
# * a nested dataclass field names its children with the format in its metadata ``"flat"``
#   (``"{}_plain"``: n -> n_plain); a child's metadata ``"flat_name"`` replaces its own name in
#   that format ("" for the estimate a nested value is named after: natural_rate itself).
# Metadata ``"metric"``: "each" (logged per judge and category), "headline" (logged once, for the
# primary judge over all prompts), absent: a column only. A child with ``"metric": False`` stays
# a column only. ``"help"`` is the docs table's meaning.
#
# Adding a field: declare it on SummaryRow (or a nested type) where its column should stand, with
# ``metadata={"metric": ..., "help": ...}`` if it is logged (none for a column only), and set it in
# _row. Its summary.json/csv column, its metric and its docs table row follow from the
# declaration (the docs site generates the table when it is built).


@dataclass(frozen=True)
class FlagRate:
    """One arm's verdicts (amplified or plain): scored rollouts, flagged ones, unscored ones
    (judge failures, excluded from ``n``) and the flag rate with its Wilson 95% interval."""

    n: int
    flagged: int
    unscored: int
    rate: Interval = field(metadata={"flat_name": "flag_rate"})

    @classmethod
    def of(cls, flags: Sequence[bool | None]) -> FlagRate:
        estimate, unscored = flag_rate(flags)
        return cls(estimate.n, estimate.k, unscored, Interval(estimate.rate, estimate.lo, estimate.hi))

    def __str__(self) -> str:
        """``k/n rate [lo, hi]`` as tables show it; ``k/n`` alone when no rollout was scored."""
        head = f"{self.flagged}/{self.n}"
        return f"{head} {self.rate.value:.3f} [{self.rate.lo:.3f}, {self.rate.hi:.3f}]" if self.n else head


@dataclass(frozen=True)
class NaturalEstimate:
    """The natural-rate estimate as the summary keeps it: published (``rate.value`` set) or
    withheld with a ``reason`` (and ``rate.hi`` alone when an upper bound is justified)."""

    rate: Interval = field(metadata={"flat_name": ""})
    ess: float | None
    method: str | None = field(metadata={"metric": False})
    reason: str | None = field(metadata={"metric": False})  # why the estimate is withheld
    mass: float | None = field(metadata={"metric": False})  # mean balance weight, ~1 when the pool covers the policy
    raw_weights: str | None = field(metadata={"metric": False})  # "alpha:mean p_0/q_alpha" per proposal
    # How the weights were cut (stopping-time weights, lda_monitor.core.natural_rate): "stopping-time"
    # or "whole-sequence" with its reason, the mean decision token (0-based) of the positioned flags,
    # and the flagged rollouts' effective number with the weights as used and with whole sequences.
    weights: str | None = field(default=None, metadata={"metric": False})
    decision_token: float | None = field(default=None, metadata={"metric": False})
    flagged_ess: float | None = field(default=None, metadata={"metric": False})
    flagged_ess_whole: float | None = field(default=None, metadata={"metric": False})

    @classmethod
    def of(cls, natural: NaturalRate, importance: NaturalRate | None = None) -> NaturalEstimate:
        """The published ``natural`` estimate; the diagnostics are those of the importance-sampling
        pool (``importance``, default ``natural``) whichever estimate was published."""
        pool = importance or natural
        weights = " ".join(f"{a:g}:{w:.3g}" for a, w in pool.raw_weights.items()) or None
        return cls(Interval(natural.rate, natural.lo, natural.hi), pool.ess, natural.method, natural.reason,
                   pool.mass, weights, pool.weights, pool.decision_token, pool.flagged_ess,
                   pool.flagged_ess_whole)


@dataclass(frozen=True)
class Candidate:
    """One of the two natural-rate estimates before the choice (:mod:`lda_monitor.core.estimate_choice`):
    its value and interval (the stratified one at 97.5% when both were computed) or why it is withheld."""

    rate: Interval = field(metadata={"flat_name": ""})
    reason: str | None = field(metadata={"metric": False})

    @classmethod
    def of(cls, natural: NaturalRate | None) -> Candidate:
        if natural is None:
            return cls(Interval(None, None, None), "not computed")
        return cls(Interval(natural.rate, natural.lo, natural.hi), natural.reason)


@dataclass(frozen=True)
class Extrapolation:
    """The logit extrapolation of a sweep's flag rates to alpha 0, or why it is withheld."""

    rate: Interval = field(metadata={"flat_name": ""})
    reason: str | None = field(metadata={"metric": False})

    @classmethod
    def of(cls, natural: NaturalRate) -> Extrapolation:
        return cls(Interval(natural.rate, natural.lo, natural.hi), natural.reason)


@dataclass
class SummaryRow:
    step: int
    checkpoint: str | None
    alpha: float = field(metadata={"metric": "headline", "help": "α used"})
    judge: str
    category: str | None  # None: all prompts
    amplified: FlagRate = field(metadata={"flat": "{}", "metric": "each", "help": (
        "amplified rollouts, primary judge, Wilson 95% interval; unscored verdicts are excluded from `n` "
        "and counted")})
    plain: FlagRate = field(metadata={"flat": "{}_plain", "metric": "each", "help": "the plain control"})
    amplification: Interval = field(metadata={"metric": "each", "help": (
        "amplified / plain rate, bounds from the two intervals (absent when the plain rate is 0; the lower "
        "bound stays finite; the upper bound is absent while unbounded, `inf` in the summary files)")})
    coherence: float = field(metadata={"metric": "headline", "help": (
        "mean NLL of the amplified tokens under the policy at the sampling temperature, *without* top-k / "
        "top-p / min-p, so it stays finite when amplification leaves the policy's nucleus (lower is more "
        "coherent; records without `logprob_policy` fall back to the truncated log-probs, leaving out tokens "
        "outside the nucleus)")})
    coherence_plain: float = field(metadata={"metric": "headline", "help": "the same for the plain rollouts"})
    kl_amp_after: float = field(metadata={"metric": "headline", "help": "mean per-token KL(amplified ‖ after)"})
    natural: NaturalEstimate = field(metadata={"flat": "natural_rate_{}", "metric": "each", "help": (
        "the policy's own (α = 0) flag rate estimated from all the evaluation's rollouts, 95% interval, mean "
        "per-prompt effective sample size; absent when withheld (`_hi` alone is then an upper bound); see "
        "[the natural-rate estimate](natural-rate.md)")})
    stratified: Candidate = field(metadata={"flat": "natural_rate_stratified_{}", "metric": "each", "help": (
        "the stratified estimate alone: per-prompt plain rates (the plain control and the estimate's Neyman-"
        "allocated plain rollouts) averaged over prompts, Fay-Feuer gamma interval (97.5% when the importance-"
        "sampling estimate was computed too); `natural_rate_method` says which estimate `natural_rate` is")})
    importance: Candidate = field(metadata={"flat": "natural_rate_importance_{}", "metric": "each", "help": (
        "the importance-sampling estimate alone, 95% interval (97.5% when published as `natural_rate`)")})
    extrapolated: Extrapolation = field(metadata={"flat": "natural_rate_extrapolated_{}", "metric": "each",
                                                  "help": (
        "audit sweeps with `natural_rate: false` only: the flag rate at the sweep's α values extrapolated to "
        "α = 0 (model-based, bootstrap interval; withheld unless 3+ α values fit the logit-linear shape)")})
    tokens: int

    def to_dict(self) -> dict:
        """The flat row: summary.json's and summary.csv's columns, in declaration order."""
        return {name: value for name, value in _flat_values(self)}


@dataclass(frozen=True)
class FlatField:
    """One flat column: its name, the attribute path to its value in a row, and the metadata of
    the top-level row field it belongs to (``metric``, ``help``) with ``metric`` already settled
    for this column."""

    name: str
    path: tuple[str, ...]
    metric: str | None
    help: str


def _children(cls) -> list:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in fields(cls)]


def _flatten(cls, fmt: str, path: tuple[str, ...], metric, help_text) -> list[FlatField]:
    out = []
    for f, kind in _children(cls):
        name = fmt.format(f.metadata.get("flat_name", f.name)).strip("_")
        own_metric = None if f.metadata.get("metric") is False else f.metadata.get("metric", metric)
        own_help = f.metadata.get("help", help_text)
        if kind is Interval:
            out += [FlatField(f"{name}_{part}".rstrip("_"), (*path, f.name, attr), own_metric, own_help)
                    for part, attr in (("", "value"), ("lo", "lo"), ("hi", "hi"))]
        elif is_dataclass(kind):
            out += _flatten(kind, fmt.format(f.metadata["flat"]), (*path, f.name), own_metric, own_help)
        else:
            out.append(FlatField(name, (*path, f.name), own_metric, own_help))
    return out


@functools.cache
def flat_fields() -> tuple[FlatField, ...]:
    """Every flat column of :class:`SummaryRow`, in order."""
    return tuple(_flatten(SummaryRow, "{}", (), None, ""))


def _flat_values(row: SummaryRow):
    for flat in flat_fields():
        value = row
        for attr in flat.path:
            value = getattr(value, attr)
        yield flat.name, value


def _flags(records: Sequence[RolloutRecord], judge: str) -> list[bool | None]:
    out = []
    for r in records:
        verdict = r.verdict(judge)
        out.append(None if verdict is None else verdict.flagged)
    return out


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
             logp_target=sum(r.logprob_after), logq={a: lp for a, lp in r.proposal_logprobs or ()},
             token_target=r.logprob_after if r.proposal_token_logprobs is not None else None,
             token_q={a: lp for a, lp in r.proposal_token_logprobs} if r.proposal_token_logprobs is not None else None,
             decision=(r.decision_tokens or {}).get(judge))
        for r, flag in zip(pool, _flags(pool, judge), strict=True)
    ]
    return pooled_rate(draws, truncated=truncated, greedy=bool(sampler.get("greedy")))


# Where the rollouts carry densities the pooled estimate is the measurement (published, or
# withheld with a bound); the extrapolation is then withheld, not offered beside it: even fits
# that pass its lack-of-fit test can be far off on a real model (docs/natural-rate.md).
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


def _stratified(amp: Sequence[RolloutRecord], plain: Sequence[RolloutRecord], judge: str,
                level: float) -> NaturalRate | None:
    """The stratified estimate over the prompts of ``amp`` from the ``plain`` rollouts (the plain
    control and the rounds' rollouts); None without plain rollouts."""
    if not plain:
        return None
    prompts = sorted({r.prompt_index for r in amp} | {r.prompt_index for r in plain})
    strata = plain_strata(plain, judge, max(prompts) + 1)
    return stratified_rate([strata[p] for p in prompts], level=level)


def _row(step, checkpoint, alpha, judge, category, amp, plain, pool, sweep, rounds) -> SummaryRow:
    """``pool``: the rollouts the natural rate pools for this alpha; ``sweep``: the rollouts at
    every alpha > 0 of the evaluation (amplified and ladder), for the extrapolation; ``rounds``: the
    stratified estimate's own plain rollouts."""
    amplified, control = FlagRate.of(_flags(amp, judge)), FlagRate.of(_flags(plain, judge))
    factor = (amplification_factor(rate_estimate(amplified.flagged, amplified.n),
                                   rate_estimate(control.flagged, control.n)) if plain else None)
    importance = _natural(amp, pool, judge) if _has_densities(amp) else None
    # The two compete (each at 97.5%, estimate_choice) only where the user asked for the stratified
    # rounds; without them the stratified estimate of the plain control is reported beside, at 95%,
    # and the importance-sampling estimate is published at 95% as it was before the stratified one.
    compete = importance is not None and bool(rounds)
    stratified = _stratified(amp, plain + rounds, judge, BOTH_LEVEL if compete else LEVEL)
    if importance is not None:
        extrapolated = NaturalRate(None, None, None, METHOD_EXTRAPOLATED, EXTRAPOLATION_SUPERSEDED)
    else:
        extrapolated = extrapolated_from_records(sweep, judge)
    # The estimate was asked for when the rollouts carry densities or the stratified rounds ran.
    if compete:
        natural = choose(importance, stratified)
    else:
        natural = importance or (stratified if rounds else NOT_SCORED)
    return SummaryRow(
        step=step, checkpoint=checkpoint, alpha=alpha, judge=judge, category=category,
        amplified=amplified, plain=control,
        amplification=Interval(factor.point, factor.lo, factor.hi) if factor else Interval(None, None, None),
        coherence=coherence([policy_logprobs(r) for r in amp]),
        coherence_plain=coherence([policy_logprobs(r) for r in plain]),
        kl_amp_after=token_weighted_kl([(r.kl_amp_after, r.num_tokens) for r in amp]),
        natural=NaturalEstimate.of(natural, importance),
        stratified=Candidate.of(stratified),
        importance=Candidate.of(importance),
        extrapolated=Extrapolation.of(extrapolated),
        tokens=sum(r.num_tokens for r in amp),
    )


def summarize(records: Iterable[RolloutRecord]) -> list[SummaryRow]:
    """Rows for every (step, checkpoint) x amplified alpha x judge x category (None = all)."""
    groups: dict[tuple, dict[str, list[RolloutRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[(r.step, r.checkpoint)][r.kind].append(r)
    rows = []
    for (step, checkpoint), kinds in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        amplified, plain_copies = kinds.get(KIND_AMPLIFIED, []), kinds.get(KIND_PLAIN, [])
        plain = distinct_draws(plain_copies)
        rounds = distinct_draws([r for r in kinds.get(KIND_ESTIMATE, []) if r.alpha == 0.0])
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
                                     of(sweep), of(rounds)))
    return rows


def _scored_at(record: RolloutRecord, alpha: float) -> bool:
    return any(a == alpha for a, _ in record.proposal_logprobs or ())


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def flat_metrics(rows: Sequence[SummaryRow], primary_judge: str, prefix: str = "lda") -> dict[str, float]:
    """Scalar metrics for loggers. The primary judge's numbers are ``lda/<metric>``; every other
    judge (a composition's members) gets ``lda/<judge>/<metric>``; categories insert
    ``by_category/<category>/`` before the metric. Headline metrics (alpha, coherence, KL) are
    logged once, from the primary judge's row over all prompts. Undefined values (no scored
    rollouts, plain rate 0, an unbounded bound) are left out rather than logged as a misleading 0."""
    out: dict[str, float] = {}
    for row in rows:
        parts = [prefix] + ([] if row.judge == primary_judge else [row.judge])
        if row.category is not None:
            parts += ["by_category", row.category]
        base = "/".join(parts)
        headline = row.judge == primary_judge and row.category is None
        for flat, (name, value) in zip(flat_fields(), _flat_values(row), strict=True):
            if flat.metric == "each" and _finite(value):
                out[f"{base}/{name}"] = float(value)
            elif flat.metric == "headline" and headline and _finite(value):
                out[f"{prefix}/{name}"] = float(value)
    return out


# Metric names of every judge but the primary one and of each category (see flat_metrics).
_SCOPED_METRICS = ("| `lda/<judge>/...`, `.../by_category/<category>/...` | every member of a judge composition, "
                   "and each prompt category (all but the headline metrics) |")


def metric_table() -> str:
    """The docs' metric table for the summary's metrics: one line per :class:`SummaryRow` field
    that is logged, with its flat names and its help (generated into docs/callback.md when the
    site is built, so it cannot drift)."""
    lines = ["| metric | meaning |", "|---|---|"]
    by_field: dict[str, list[FlatField]] = defaultdict(list)
    for flat in flat_fields():
        if flat.metric:
            by_field[flat.path[0]].append(flat)
    for flats in by_field.values():
        names = ", ".join(f"`lda/{f.name}`" for f in flats)
        scope = "; primary judge over all prompts only" if flats[0].metric == "headline" else ""
        lines.append(f"| {names} | {flats[0].help}{scope} |")
    lines.append(_SCOPED_METRICS)
    return "\n".join(lines)


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
