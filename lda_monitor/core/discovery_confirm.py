"""Discovery's confirmation round: more rollouts where a phrase's evidence is borderline.

Why: the judge flags a behaviour at its first amplified hit, but discovery must show that a phrase
is over-produced against the plain control, among every phrase of the evaluation. When training
has just installed a behaviour (3 of 50 amplified rollouts hold it, 0 of 50 plain), no test at that
size can: the within-prompt exact p-value of 3 against 0 is 0.125 at best. The detection benchmark
measured exactly that at every evaluation where discovery lagged the judge (p 0.125, 0.25, 0.5), and
the phrase was named one evaluation later, once it had grown. What closes the lag is more rollouts
where the signal is, at the evaluation where it appears.

Design (a screening stage and an independent confirmation stage, so no correction for the look is
needed):

* Screening: the evaluation's own amplified and plain rollouts, as :func:`~.discovery.discover`
  tests them. A *candidate* is an over-produced phrase that discovery did not keep but whose
  one-sided p-value is at most ``SCREEN_P`` (2 amplified holders against 0 plain, in two prompts, is
  0.25), held by at least ``MIN_HOLDERS`` amplified rollouts (one holder is no evidence of a phrase:
  every rollout holds its own words) and at least ``MIN_RATIO`` times as often as plain ones (what a
  rare behaviour looks like when it first appears; a common word that amplification shifts a little
  is discovery's business at the usual size, and would only spread the round over every prompt).
  Phrases held by exactly the same rollouts are one piece of evidence: one candidate, its longest
  phrase. At most ``CONFIRM_TOP`` candidates, the longest phrases first, then the smallest p-values:
  a behaviour training installs is a sentence, several rollouts sharing a long exact word sequence
  by chance is rare unless the prompt dictates it (and then plain rollouts share it too), while
  single words pass the screening by chance at every evaluation. (The order only decides where the
  round samples; it cannot make the confirmation test less valid, since it reads the screening alone.)
* Confirmation: ``discovery_confirm_samples_per_prompt`` new amplified rollouts (same alpha) and as
  many plain ones on every prompt whose amplified rollouts hold a candidate, each in its own random
  stream (records of kind ``confirm``; the judge's rates, the estimate and the screening never read
  them). Each candidate is tested on these rollouts *alone* with the same exact stratified test;
  it is confirmed when its p-value times the number of candidates (Bonferroni) is at most the
  discovery level. The new rollouts are independent of the screening that chose the candidates,
  so the chance that any phrase from a policy equal to its reference is confirmed is at most the
  level, whatever the screening did.

The round is drawn inside :func:`~.evaluation.evaluate_chunks`, so the callback and the audit
draw the same rollouts, and :func:`~.discovery.discover_records` recomputes the screening from the
records, so ``lda-monitor discover`` over saved records reports the same phrases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .records import KIND_AMPLIFIED, KIND_CONFIRM, KIND_PLAIN

SCREEN_P = 0.25  # a phrase's screening p-value at most this makes it a candidate ...
MIN_HOLDERS = 2  # ... if at least this many amplified rollouts hold it ...
MIN_RATIO = 3.0  # ... at least this many times as often as plain ones (log_ratio's shares)
CONFIRM_TOP = 3  # candidates per evaluation at most (the Bonferroni factor)


@dataclass(frozen=True)
class Candidate:
    """A borderline phrase: its words, its screening p-value and the prompts its amplified holders
    answer (where the confirmation round samples)."""

    words: tuple[str, ...]
    p_value: float
    prompts: tuple[int, ...]


def candidates(amplified: Sequence, plain: Sequence, kept: Sequence[str], *, max_words: int,
               top: int = CONFIRM_TOP) -> list[Candidate]:
    """The borderline over-produced phrases of one evaluation (see the module docstring); ``kept``:
    the texts of the phrases discovery kept (they and the phrases inside them need no confirmation)."""
    import math

    from .discovery import _Occurrences, _tests, log_ratio

    occurrences = _Occurrences.of(amplified, plain, max_words)
    counted = [g for g, (a, b) in occurrences.holders.items() if len(a) >= MIN_HOLDERS]
    total_a, total_p = occurrences.n_amplified, occurrences.n_plain_total
    inside = [f" {text} " for text in kept]
    groups: dict[tuple[int, ...], tuple[float, tuple[str, ...]]] = {}
    for gram, direction, p in _tests(occurrences, counted, SCREEN_P):  # those that could reach SCREEN_P
        a_pos, p_pos = occurrences.holders[gram]
        if (direction != "over" or p > SCREEN_P
                or log_ratio(len(a_pos), total_a, len(p_pos), total_p) < math.log(MIN_RATIO)
                or any(f" {' '.join(gram)} " in k for k in inside)):
            continue
        key = tuple(a_pos)
        best = groups.get(key)
        if best is None or (p, -len(gram), gram) < (best[0], -len(best[1]), best[1]):
            groups[key] = (p, gram)
    chosen = sorted(groups.items(), key=lambda kv: (-len(kv[1][1]), kv[1][0], kv[1][1]))[:top]
    return [Candidate(gram, p, tuple(sorted({occurrences.rollouts[pos].prompt_index for pos in holders})))
            for holders, (p, gram) in chosen]


def confirmed(found: Sequence[Candidate], amplified: Sequence, plain: Sequence, *, q_level: float, min_count: int,
              max_words: int, examples: int) -> list:
    """The candidates the confirmation rollouts (``amplified``, ``plain``: kind ``confirm``) confirm,
    as :class:`~.discovery.Phrase` objects whose counts and p-value are the round's own and whose
    q-value is the Bonferroni-adjusted p-value."""
    from .discovery import Phrase, _add_examples, _Occurrences, log_ratio
    from .stats import stratified_pvalues

    if not found or not amplified or not plain:
        return []
    occurrences = _Occurrences.of(amplified, plain, max_words)
    total_a, total_p = occurrences.n_amplified, occurrences.n_plain_total
    out, where = [], {}
    for candidate in found:
        if candidate.words not in occurrences.holders:
            continue
        a_pos, p_pos = occurrences.holders[candidate.words]
        p_value, _ = stratified_pvalues(occurrences.table(candidate.words))
        adjusted = min(1.0, p_value * len(found))
        if adjusted <= q_level and len(a_pos) >= min_count and len(a_pos) * total_p > len(p_pos) * total_a:
            text = " ".join(candidate.words)
            where[text] = (tuple(a_pos), tuple(p_pos))
            out.append(Phrase(text, "over", len(a_pos), total_a, len(p_pos), total_p, p_value, adjusted,
                              log_ratio(len(a_pos), total_a, len(p_pos), total_p), confirmed=True))
    _add_examples(out, where, amplified, plain, examples)
    return out


def split(records: Sequence) -> tuple[list, list]:
    """A confirmation round's records as (amplified, plain)."""
    return ([r for r in records if r.kind == KIND_CONFIRM and r.alpha != 0.0],
            [r for r in records if r.kind == KIND_CONFIRM and r.alpha == 0.0])


def screening_sides(records: Sequence, alpha: float) -> tuple[list, list]:
    """The evaluation's amplified rollouts at ``alpha`` and its plain control (what screens)."""
    return ([r for r in records if r.kind == KIND_AMPLIFIED and r.alpha == alpha],
            [r for r in records if r.kind == KIND_PLAIN])
