"""The stratified estimate's own plain rollouts, drawn in rounds after an evaluation's prompts.

Once every prompt's amplified (and ladder) rollouts are judged, they screen the prompts: each round
adds ``stratified_samples_per_prompt`` x prompts plain rollouts, Neyman-allocated by the screening
(:mod:`lda_monitor.core.allocation`; the first round gives every prompt ``stratified_floor``), decoded
without the reference model and stopped once their verdict is decided (:mod:`.early_stop`). They are
records of kind ``estimate`` at alpha 0, so the summary counts them with the plain control in the
stratified estimate (:mod:`lda_monitor.core.stratified`) and nowhere else.

With ``natural_rate_half_width`` the rounds go on until the estimate's relative half-width reaches
it or the budget is spent, and then say so. A round's rollouts depend only on the screening and the
round's number (each has its own random stream; sample indices continue across rounds), so a
resumed audit that skips the rounds already on disk draws the same later rounds.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence

from ..engine.distributed import SINGLE, Ranks
from ..engine.sampling import sample
from .allocation import neyman_allocation, screening_scores
from .early_stop import decided_stop
from .estimate_choice import BOTH_LEVEL
from .measurement import Measurement
from .prompts import PromptItem
from .records import KIND_AMPLIFIED, KIND_ESTIMATE, RolloutRecord
from .stats import LEVEL
from .stratified import plain_strata, relative_half_width, stratified_rate


def screening(records: Sequence[RolloutRecord], judge: str, alpha: float, n_prompts: int) -> list[float]:
    """Each prompt's screening score from the amplified rollouts at ``alpha`` and the ladder's."""
    flagged, scored = [0] * n_prompts, [0] * n_prompts
    for r in records:
        if (r.kind == KIND_AMPLIFIED and r.alpha == alpha) or (r.kind == KIND_ESTIMATE and r.alpha > 0):
            verdict = r.verdict(judge)
            if verdict is not None and verdict.flagged is not None:
                scored[r.prompt_index] += 1
                flagged[r.prompt_index] += bool(verdict.flagged)
    return screening_scores(flagged, scored)


def round_work(scores: Sequence[float], measurement: Measurement, round_index: int) -> list[tuple[int, int]]:
    """(prompt, sample index) of round ``round_index``'s rollouts (indices continue across rounds)."""
    per_round = measurement.stratified_samples_per_prompt * len(scores)
    first = neyman_allocation(scores, per_round, floor=measurement.stratified_floor)
    later = neyman_allocation(scores, per_round, floor=0)
    counts = first if round_index == 0 else later
    start = [first[p] + later[p] * (round_index - 1) if round_index else 0 for p in range(len(scores))]
    return [(p, start[p] + s) for p in range(len(scores)) for s in range(counts[p])]


def estimate_rounds(pair, items: Sequence[PromptItem], judge, *, alpha: float, measurement: Measurement, step: int,
                    stream_seed: int, records: Sequence[RolloutRecord], first_index: int, skip=frozenset(),
                    ranks: Ranks = SINGLE, make_part) -> Iterator[tuple[int, object]]:
    """Yield ``(first_index + round, part)`` for each round not in ``skip`` (whose records must be in
    ``records``); ``stream_seed``: the rounds' random streams (the evaluation's own for the kind);
    ``make_part(rollouts, config, seconds)`` builds the chunk's
    :class:`~lda_monitor.core.evaluation.Evaluation`, as for the prompts' chunks."""
    rounds = measurement.estimate_rounds(len(items))
    if not rounds:
        return
    records = list(records)
    scores = screening(records, judge.name, alpha, len(items))
    level = BOTH_LEVEL if measurement.importance_sampling else LEVEL
    target = measurement.natural_rate_half_width
    config = measurement.sampling(0.0, stream_seed)
    prompts = [item.prompt for item in items]
    for r in range(rounds):
        if first_index + r not in skip:
            start = time.perf_counter()
            work = round_work(scores, measurement, r)
            share = ranks.shard(work)

            def drawn(share=share, start=start):
                stop = decided_stop(judge, pair.tokenizer, items, share)
                rollouts = sample(pair, prompts, config, work=share, alphas=[0.0] * len(share), lockstep=ranks,
                                  stop_when=stop)
                return make_part(rollouts, config, time.perf_counter() - start)

            parts = ranks.gather_or_raise(drawn)
            part = parts[0]
            for other in parts[1:]:
                part.extend(other)
            part.records.sort(key=lambda x: (x.prompt_index, x.sample_index))
            records += part.records
            yield first_index + r, part
        if target is None:
            break
        estimate = stratified_rate(plain_strata(records, judge.name, len(items)), level=level)
        reached = relative_half_width(estimate)
        if reached is not None and reached <= target:
            return
    if target is not None:
        got = f"+-{reached:.0%}" if reached is not None else "no published estimate"
        warnings.warn(f"lda-monitor: the natural-rate estimate at step {step} reached {got}, not the +-{target:.0%} "
                      f"asked, within {rounds} rounds of {measurement.stratified_samples_per_prompt} rollouts per "
                      "prompt: raise natural_rate_max_rollouts or accept the wider interval", stacklevel=2)
