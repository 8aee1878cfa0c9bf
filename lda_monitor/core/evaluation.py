"""One evaluation: prompts -> amplified and plain rollouts -> verdicts -> records -> metrics.

The training callback and the offline auditor both drive this one chunked loop; neither
samples, judges or builds records on its own, so the two front ends cannot drift apart:

* :func:`choose_alpha`: alpha from the schedule over the run's horizon, or - for an adaptive
  schedule - bisected on a probe batch (:func:`probe_kl`), the same way in both front ends;
* :func:`evaluation_chunks` / :func:`evaluate_chunks`: the prompts in chunks of about one
  sampling batch per kind (amplified and plain rollouts of the same prompts together). Each
  rollout has its own random stream seeded by (seed, step, prompt, sample), so chunking changes
  no result: the auditor persists each chunk as it finishes, and a resumed audit skips the
  chunks already on disk;
* :func:`evaluate`: all chunks into one :class:`Evaluation`, within an optional time budget
  (the callback's ``max_eval_seconds``): once it is spent the remaining prompts are skipped, and
  the chunks done are exactly the corresponding rollouts of an unbudgeted evaluation.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass, field

from ..engine.distributed import SINGLE, Ranks
from ..engine.sampling import Rollout, rollout_seed, sample
from ..engine.sampling_config import SamplingConfig
from ..judges.health import JudgeFailures, evaluation_scope, failure_metrics, judge_failures
from . import metric_names
from .decision import decision_tokens, token_text_ends
from .discovery import MAX_WORDS
from .estimate_rounds import estimate_rounds
from .measurement import Measurement
from .progress import EvaluationProgress
from .prompts import PromptItem, question_text
from .records import KIND_AMPLIFIED, KIND_CONFIRM, KIND_ESTIMATE, PER_TOKEN_DECIMALS, RolloutRecord
from .summary import SummaryRow, flat_metrics, summarize


@dataclass
class Evaluation:
    """The records of one evaluation (one step or checkpoint at one alpha) and its costs."""

    step: int
    alpha: float
    records: list[RolloutRecord]
    judge_names: list[str]
    primary_judge: str
    seconds: float = 0.0
    tokens: int = 0
    skipped_rollouts: int = 0
    # summarize(records), kept with the identity and length of the records it was computed from:
    # the metrics, the progress line's withheld reason and the W&B withheld table all read it.
    _rows: tuple = field(default=(None, None), init=False, repr=False, compare=False)

    def rows(self) -> list[SummaryRow]:
        """The summary rows of these records, computed once per set of records (an ``extend`` or a
        replaced ``records`` list computes them again)."""
        key = (id(self.records), len(self.records))
        if self._rows[0] != key:
            self._rows = (key, summarize(self.records))
        return self._rows[1]

    def extend(self, part: Evaluation) -> Evaluation:
        """Add a later chunk of the same evaluation; returns self."""
        self.records += part.records
        self.tokens += part.tokens
        self.seconds += part.seconds
        self.judge_names = self.judge_names or part.judge_names
        return self

    def metrics(self) -> dict[str, float]:
        """The ``lda/...`` scalars of this evaluation (see :mod:`lda_monitor.monitor.callback`)."""
        out = flat_metrics(self.rows(), self.primary_judge)
        out[metric_names.summary_metric("alpha")] = float(self.alpha)
        out[metric_names.EVAL_SECONDS] = self.seconds
        out[metric_names.TOKENS_PER_SECOND] = self.tokens / self.seconds if self.seconds > 0 else 0.0
        out[metric_names.SKIPPED_ROLLOUTS] = float(self.skipped_rollouts)
        out.update(failure_metrics(self.judge_failures(), self.primary_judge))
        return out

    def judge_failures(self) -> list[JudgeFailures]:
        """Per judge, how many of this evaluation's rollouts it failed to score."""
        return judge_failures(self.records)


def evaluation_seed(seed: int, step: int) -> int:
    """Seed of the evaluation at ``step``: a function of (seed, step) alone, so the callback and the
    auditor draw the same streams at the same step, and a resumed run repeats nothing."""
    return (seed * 1_000_003 + step) % (1 << 62)


def run_seed(seed: int, kind: str, alpha: float) -> int:
    """The random streams of one run: amplified rollouts keep the evaluation's seed; the plain
    control and the ladder get their own, so the runs are independent draws (shared uniforms
    would correlate them through the inverse CDF, and the natural rate's variance assumes not)."""
    if kind == KIND_AMPLIFIED:
        return seed
    return rollout_seed(seed, kind, float(alpha))  # type: ignore[arg-type] - hashed as text


def work_items(n_prompts: int, samples: int) -> list[tuple[int, int]]:
    return [(p, s) for p in range(n_prompts) for s in range(samples)]


def rollout_records(
    rollouts: Sequence[Rollout],
    items: Sequence[PromptItem],
    verdicts: dict[str, list],
    *,
    kind: str,
    step: int,
    seed: int,
    run_id: str,
    source: str,
    checkpoint: str | None = None,
    sampling: SamplingConfig | None = None,
    tokenizer=None,
) -> list[RolloutRecord]:
    """Join rollouts with every judge's verdicts into schema records (``sampling``: the knobs the
    natural-rate estimate needs to know, recorded with scored rollouts; ``tokenizer``: maps where
    verdicts were decided in the text to tokens, :mod:`lda_monitor.core.decision`)."""
    sampler = None
    if sampling is not None and any(r.logprob_at for r in rollouts):
        sampler = {k: getattr(sampling, k) for k in ("greedy", "temperature", "top_k", "top_p", "min_p")}
    out = []
    for i, r in enumerate(rollouts):
        item = items[r.prompt_index]
        ends = token_text_ends(tokenizer, r.completion_token_ids, r.completion) if tokenizer is not None else None
        own = {name: v[i] for name, v in verdicts.items()}
        out.append(
            RolloutRecord(
                run_id=run_id,
                source=source,
                step=step,
                checkpoint=checkpoint,
                kind=kind,
                alpha=r.alpha,
                seed=seed,
                prompt_index=r.prompt_index,
                sample_index=r.sample_index,
                prompt_id=item.id,
                category=item.category,
                prompt=r.prompt,
                rendered_prompt=r.rendered_prompt,
                completion=r.completion,
                token_ids=r.token_ids,
                stop_reason=r.stop_reason,
                num_tokens=r.num_tokens,
                logprob_sampled=r.logprob_sampled,
                logprob_after=r.logprob_after,
                logprob_policy=r.logprob_policy,
                logprob_before=r.logprob_before,
                kl_amp_after=r.kl_amp_after,
                verdicts=own,
                proposal_logprobs=[[a, sum(lp)] for a, lp in r.logprob_at.items()] if r.logprob_at else None,
                sampler=sampler,
                token_ends=ends,
                decision_tokens=decision_tokens(ends, own),
                proposal_token_logprobs=[[a, [round(x, PER_TOKEN_DECIMALS) for x in lp]]
                                         for a, lp in r.logprob_at.items()] if r.logprob_at else None,
            )
        )
    return out


def judge_rollouts(judge, items: Sequence[PromptItem], rollouts: Sequence[Rollout]) -> dict[str, list]:
    """Every judge's verdicts (a composition's members too), keyed by judge name."""
    if not rollouts:
        return {}
    questions = [question_text(items[r.prompt_index].prompt) for r in rollouts]
    metadata = [
        {"category": items[r.prompt_index].category, "prompt_id": items[r.prompt_index].id}
        for r in rollouts
    ]
    return judge.evaluate(questions, [r.completion for r in rollouts], metadata)


def evaluation_chunks(n_prompts: int, measurement: Measurement) -> list[range]:
    """Prompt ranges of about one sampling batch per kind of rollout."""
    per_prompt = max(measurement.samples_per_prompt, measurement.plain_samples, measurement.estimate_samples, 1)
    size = max(1, measurement.batch_size // per_prompt)
    return [range(start, min(start + size, n_prompts)) for start in range(0, n_prompts, size)]


def evaluate_chunks(
    pair,
    items: Sequence[PromptItem],
    judge,
    *,
    alpha: float,
    measurement: Measurement,
    step: int,
    run_id: str,
    source: str,
    checkpoint: str | None = None,
    skip: frozenset[int] | set[int] = frozenset(),
    ranks: Ranks = SINGLE,
    progress: EvaluationProgress | None = None,
    prior: Sequence[RolloutRecord] = (),
) -> Iterator[tuple[int, Evaluation]]:
    """Yield ``(chunk index, Evaluation of that chunk)`` for every chunk not in ``skip``.

    Per chunk: every run of :meth:`Measurement.runs` on the same prompts (amplified rollouts at
    ``alpha``, the plain control, the natural-rate ladder), decoded together with a per-row alpha
    (:func:`decode_groups`), each rollout in its own random stream, so the records are those of
    one decode per run; judged run by run. Under a process group (``ranks``), each rank samples and judges every
    ``world_size``-th rollout of the chunk, in lockstep, and every rank gets all the records back
    in work order: because each rollout has its own random stream, that is exactly the
    single-process result. The caller may stop iterating at any chunk boundary. A judge's
    circuit breaker, once tripped, stays open until the iteration ends (one evaluation).
    ``progress`` hears of each rollout (this rank's share) as it finishes, by phase (run kind);
    the chunks in ``skip`` count as done.

    After the prompts' chunks come the stratified estimate's rounds
    (:mod:`lda_monitor.core.estimate_rounds`), numbered on from the last chunk; they screen the prompts
    by the records of every chunk, so a caller that skips chunks passes those chunks' records as ``prior``.
    """
    seed = evaluation_seed(measurement.seed, step)
    runs = measurement.runs(alpha)
    plan = _ChunkDecoding(
        pair=pair, prompts=[item.prompt for item in items], measurement=measurement, alpha=alpha, seed=seed,
        runs=runs, score_alphas=measurement.score_alphas(alpha),
        # This rank's share of each run's whole work list, so the split between ranks does not
        # depend on the chunking (every world_size-th rollout, as without chunks).
        shares=[ranks.shard(work_items(len(items), samples)) for _, _, samples in runs], ranks=ranks,
        progress=progress)
    chunks = evaluation_chunks(len(items), measurement)
    if progress is not None:
        progress.begin(*phase_counts(runs, plan.shares, chunks, skip))
    seen: list[RolloutRecord] = list(prior)
    with evaluation_scope(judge), closing(progress) if progress is not None else nullcontext():
        for index, chunk in enumerate(chunks):
            if index in skip:
                continue
            start = time.perf_counter()

            def judged(chunk=chunk):
                return [_judged_run(judge, items, done, pair=pair, measurement=measurement, seed=seed, kind=kind,
                                    kind_alpha=kind_alpha, step=step, run_id=run_id, source=source,
                                    checkpoint=checkpoint)
                        for (kind, kind_alpha, _), done in zip(runs, plan.decode(chunk), strict=True)]

            records, tokens, names = _merged(ranks.gather_or_raise(judged), len(runs))
            seen += records
            yield index, Evaluation(step=step, alpha=float(alpha), records=records, judge_names=names,
                                    primary_judge=judge.name, seconds=time.perf_counter() - start, tokens=tokens)

        def round_part(rollouts, config, seconds, kind=KIND_ESTIMATE):
            verdicts = judge_rollouts(judge, items, rollouts)
            records = rollout_records(rollouts, items, verdicts, kind=kind, step=step, seed=config.seed,
                                      run_id=run_id, source=source, checkpoint=checkpoint, sampling=config,
                                      tokenizer=pair.tokenizer)
            return Evaluation(step=step, alpha=float(alpha), records=records, judge_names=list(verdicts),
                              primary_judge=judge.name, seconds=seconds, tokens=sum(r.num_tokens for r in rollouts))

        yield from estimate_rounds(pair, items, judge, alpha=alpha, measurement=measurement, step=step,
                                   stream_seed=run_seed(seed, KIND_ESTIMATE, 0.0),
                                   records=seen, first_index=len(chunks), skip=skip, ranks=ranks, make_part=round_part)
        index = len(chunks) + measurement.estimate_rounds(len(items))
        if index not in skip:
            part = _confirmation_round(pair, items, alpha=alpha, measurement=measurement, seed=seed, records=seen,
                                       ranks=ranks, make_part=round_part, progress=progress)
            if part is not None:
                yield index, part


def _confirmation_round(pair, items: Sequence[PromptItem], *, alpha: float, measurement: Measurement, seed: int,
                        records: Sequence[RolloutRecord], ranks: Ranks, make_part,
                        progress: EvaluationProgress | None = None) -> Evaluation | None:
    """Discovery's confirmation round (:func:`lda_monitor.core.discovery.confirmed`): new amplified and
    plain rollouts on the prompts of the screening's borderline phrases, or None when it has none
    (or the round is off). Each side has its own random stream; sample indices start at 0."""
    from .discovery import candidates, discover, screening_sides

    n = measurement.discovery_confirm_samples_per_prompt
    amplified, plain = screening_sides(records, alpha)
    if not (n and amplified and plain):
        return None
    stage = discover(amplified, plain)
    found = candidates(amplified, plain, [p.text for p in stage.over()], max_words=MAX_WORDS)
    if not found:
        return None
    start = time.perf_counter()
    share = ranks.shard([(p, s) for p in sorted({p for c in found for p in c.prompts}) for s in range(n)])
    prompts = [item.prompt for item in items]
    if progress is not None:
        progress.add_phase(KIND_CONFIRM, 2 * len(share))
    advance = None if progress is None else (lambda done: progress.advance(KIND_CONFIRM, len(done)))

    def drawn():
        parts = []
        for side in (float(alpha), 0.0):
            config = measurement.sampling(side, run_seed(seed, KIND_CONFIRM, side))
            rollouts = sample(pair, prompts, config, work=share, alphas=[side] * len(share), lockstep=ranks,
                              on_done=advance)
            parts.append(make_part(rollouts, config, 0.0, kind=KIND_CONFIRM))
        for other in parts[1:]:
            parts[0].extend(other)
        return parts[0]

    gathered = ranks.gather_or_raise(drawn)
    part = gathered[0]
    for other in gathered[1:]:
        part.extend(other)
    part.records.sort(key=lambda x: (x.alpha == 0.0, x.prompt_index, x.sample_index))
    for r in part.records:
        r.extra["confirms"] = float(alpha)
    part.seconds = time.perf_counter() - start
    return part


@dataclass(frozen=True)
class _ChunkDecoding:
    """What decoding any chunk of one evaluation needs: the runs (kind, alpha, samples per prompt),
    this rank's share of each run's work, and the sampler settings."""

    pair: object
    prompts: list
    measurement: Measurement
    alpha: float
    seed: int
    runs: list[tuple[str, float, int]]
    score_alphas: tuple[float, ...]
    shares: list[list[tuple[int, int]]]
    ranks: Ranks
    progress: EvaluationProgress | None = None  # hears of each rollout as it finishes

    def decode(self, chunk) -> list[list[Rollout]]:
        """Per run, this rank's rollouts of the prompts in ``chunk``: the runs of each
        :func:`decode_groups` group in one decode, each rollout in its own random stream."""
        rollouts: list[list[Rollout]] = [[] for _ in self.runs]
        for group in decode_groups(self.runs, self.score_alphas):
            owners = [(i, w) for i in group for w in self.shares[i] if w[0] in chunk]
            seeds = [run_seed(self.seed, self.runs[i][0], self.runs[i][1]) for i, _ in owners]
            decoded = sample(self.pair, self.prompts, self.measurement.sampling(self.alpha, self.seed),
                             work=[w for _, w in owners],
                             streams=[(sd, *w) for sd, (_, w) in zip(seeds, owners, strict=True)],
                             alphas=[self.runs[i][1] for i, _ in owners], lockstep=self.ranks,
                             score_alphas=self.score_alphas,
                             on_done=None if self.progress is None else
                             lambda done, owners=owners: _report(self.progress, self.runs, owners, done))
            for (i, _), rollout in zip(owners, decoded, strict=True):
                rollouts[i].append(rollout)
        return rollouts


def _judged_run(judge, items, done: list[Rollout], *, pair, measurement: Measurement, seed: int, kind: str,
                kind_alpha: float, step: int, run_id: str, source: str, checkpoint: str | None) -> tuple:
    """(judge names, tokens, records) of one run's rollouts, judged."""
    config = measurement.sampling(kind_alpha, run_seed(seed, kind, kind_alpha))
    verdicts = judge_rollouts(judge, items, done)
    return list(verdicts), sum(r.num_tokens for r in done), rollout_records(
        done, items, verdicts, kind=kind, step=step, seed=config.seed, run_id=run_id,
        source=source, checkpoint=checkpoint, sampling=config, tokenizer=pair.tokenizer,
    )


def _merged(parts: list[list[tuple]], n_runs: int) -> tuple[list[RolloutRecord], int, list[str]]:
    """Every rank's judged runs (``parts``, one list per rank) as one evaluation's records (each
    run's in work order), token count and judge names."""
    records: list[RolloutRecord] = []
    tokens = 0
    names: list[str] = []
    for run_index in range(n_runs):
        run_parts = [part[run_index] for part in parts]
        names = names or next((n for n, _, _ in run_parts if n), [])
        tokens += sum(t for _, t, _ in run_parts)
        records += sorted((r for _, _, rs in run_parts for r in rs), key=lambda r: (r.prompt_index, r.sample_index))
    return records, tokens, names


def phase_counts(runs, shares, chunks, skip) -> tuple[dict[str, int], dict[str, int]]:
    """Rollouts per phase (run kind; the ladder's alphas are one phase) in all, and those in the
    chunks of ``skip``, for :class:`~lda_monitor.core.progress.EvaluationProgress`."""
    totals: dict[str, int] = {}
    done: dict[str, int] = {}
    skipped = {p for index in skip if index < len(chunks) for p in chunks[index]}  # rounds come after
    for (kind, _, _), share in zip(runs, shares, strict=True):
        totals[kind] = totals.get(kind, 0) + len(share)
        done[kind] = done.get(kind, 0) + sum(1 for p, _ in share if p in skipped)
    return totals, done


def _report(progress: EvaluationProgress, runs, owners, done: list[int]) -> None:
    """Tell ``progress`` which phases the finished rollouts (indices into ``owners``) belong to."""
    for kind, n in Counter(runs[owners[i][0]][0] for i in done).items():
        progress.advance(kind, n)


def decode_groups(runs: Sequence[tuple[str, float, int]], score_alphas: Sequence[float]) -> list[list[int]]:
    """The runs (indices into ``runs``) decoded together: every run that needs the reference
    model's forward (alpha != 0, or every run when rollouts are scored at other alphas) in one
    decode, the others (plain rollouts without scoring) in another, so that no row pays for a
    forward it does not use."""
    with_before = [i for i, (_, a, _) in enumerate(runs) if a != 0 or score_alphas]
    without = [i for i in range(len(runs)) if i not in with_before]
    return [group for group in (with_before, without) if group]


def evaluate(
    pair,
    items: Sequence[PromptItem],
    judge,
    *,
    alpha: float,
    measurement: Measurement,
    step: int,
    run_id: str,
    source: str,
    checkpoint: str | None = None,
    max_seconds: float | None = None,
    started: float | None = None,
    ranks: Ranks = SINGLE,
    progress: EvaluationProgress | None = None,
) -> Evaluation:
    """Every chunk of :func:`evaluate_chunks` in one :class:`Evaluation`, within ``max_seconds``
    (counted from ``started``, so an adaptive probe before it counts too). Under a process group
    rank 0's clock decides when the budget is spent, so every rank skips the same prompts."""
    start = started if started is not None else time.perf_counter()
    chunks = evaluation_chunks(len(items), measurement)
    result = Evaluation(step=step, alpha=float(alpha), records=[], judge_names=[], primary_judge=judge.name)
    done = 0
    for index, part in evaluate_chunks(pair, items, judge, alpha=alpha, measurement=measurement, step=step,
                                       run_id=run_id, source=source, checkpoint=checkpoint, ranks=ranks,
                                       progress=progress):
        result.extend(part)
        done = index + 1
        if max_seconds is None or done >= len(chunks):  # the estimate's rounds are not cut by the budget
            continue
        elapsed = ranks.broadcast(time.perf_counter() - start)
        if elapsed > max_seconds:
            remaining = sum(len(c) for c in chunks[done:])
            result.skipped_rollouts = remaining * measurement.rollouts_per_prompt(alpha)
            warnings.warn(
                f"lda-monitor: the evaluation at step {step} used {elapsed:.1f}s of its "
                f"max_eval_seconds={max_seconds}; skipped {remaining} of {len(items)} prompts "
                f"({result.skipped_rollouts} rollouts). Metrics for this step cover the first "
                f"{len(items) - remaining} prompts only (lda/skipped_rollouts); raise max_eval_seconds "
                "or sample less.",
                stacklevel=2,
            )
            break
    result.seconds = time.perf_counter() - start
    return result


def choose_alpha(schedule, pair, items, measurement: Measurement, *, step: int, horizon: int | None,
                 probe_prompts: int = 4, ranks: Ranks = SINGLE) -> float:
    """The schedule's alpha at ``step`` over ``horizon`` steps, recorded in the schedule's
    (checkpointed) history; an adaptive schedule bisects on a probe batch."""
    if schedule.is_adaptive:
        kl_at = probe_kl(pair, items[:probe_prompts], measurement, step=step, ranks=ranks)
        alpha = schedule.choose(step, horizon, kl_at)
    else:
        alpha = schedule.alpha_at(step, horizon)
    schedule.record(step, alpha)
    return float(alpha)


def probe_kl(pair, items: Sequence[PromptItem], measurement: Measurement, *, step: int, samples: int = 1,
             ranks: Ranks = SINGLE):
    """A function alpha -> mean per-token KL(amplified || after) on a small probe batch, for the
    adaptive schedule's bisection. Token-weighted over the probe's rollouts; under a process
    group the probe is split like :func:`evaluate` and every rank gets the same value."""
    prompts = [item.prompt for item in items]
    seed = evaluation_seed(measurement.seed, step) ^ 0x5EED
    work = ranks.shard(work_items(len(prompts), samples))

    def kl_at(alpha: float) -> float:
        config = measurement.sampling(alpha, seed)

        def weighted():
            rollouts = sample(pair, prompts, config, work=work, lockstep=ranks)
            return sum(r.kl_amp_after * r.num_tokens for r in rollouts), sum(r.num_tokens for r in rollouts)

        parts = ranks.gather_or_raise(weighted)
        return sum(k for k, _ in parts) / max(sum(t for _, t in parts), 1)

    return kl_at
