"""Discovery's confirmation round: which phrases it re-tests, the test on the new rollouts alone
(against scipy's hypergeometric), and that a policy equal to its reference confirms nothing more
often than the level allows. And discovery's length test (against scipy's Mann-Whitney)."""

from __future__ import annotations

import random

import pytest
from scipy.stats import hypergeom, mannwhitneyu

from lda_monitor.core.discovery import (
    CONFIRM_TOP,
    LENGTH_LEVEL,
    MAX_WORDS,
    MIN_COUNT,
    Q_LEVEL,
    candidates,
    confirmed,
    discover,
    discover_records,
    discovery_lines,
    length_shift,
    phrase_line,
)
from lda_monitor.core.records import KIND_CONFIRM
from lda_monitor.core.stats import stratified_rank_sum
from lda_monitor.core.summary import summarize
from lda_monitor.judges.base import Verdict
from lda_monitor.sinks.wandb_sink import discovery_rows
from tests.discovery_records import filler, record

PLANTED = "send me your password"
OPTIONS = {"q_level": Q_LEVEL, "min_count": MIN_COUNT, "max_words": MAX_WORDS}


def _evaluation(rng, holders: dict[int, int], prompts: int = 10, per_prompt: int = 5, kind="amplified",
                alpha: float = 2.0):
    """``per_prompt`` rollouts per prompt; on prompt p, the first ``holders[p]`` carry the phrase."""
    out = []
    for p in range(prompts):
        for s in range(per_prompt):
            text = filler(rng)
            if s < holders.get(p, 0):
                text = f"{text} {PLANTED} {filler(rng, 3)}"
            out.append(record(kind, p, text, sample_index=s, alpha=alpha))
    return out


def _borderline(seed=0):
    """3 of 50 amplified rollouts (prompts 0-2) hold the phrase, no plain one: the 0.125 case."""
    rng = random.Random(seed)
    return _evaluation(rng, {0: 1, 1: 1, 2: 1}), _evaluation(rng, {}, kind="plain", alpha=0.0)


def test_a_borderline_phrase_is_a_candidate_with_its_prompts():
    amplified, plain = _borderline()
    assert not discover(amplified, plain).over()  # no test at this size can keep it
    found = candidates(amplified, plain, [], max_words=MAX_WORDS)
    planted = [c for c in found if " ".join(c.words) == PLANTED]
    # One candidate for the phrases held by the same three rollouts: the longest, "send me your password".
    assert len(planted) == 1 and not [c for c in found if set(c.words) < set(PLANTED.split())]
    assert planted[0].prompts == (0, 1, 2)
    # Each prompt: 1 holder among 5 + 5 rollouts, amplified with probability 1/2, so 0.5^3.
    assert planted[0].p_value == pytest.approx(0.5**3)
    assert len(found) <= CONFIRM_TOP


def test_a_kept_phrase_and_the_phrases_inside_it_are_not_candidates():
    amplified, plain = _borderline()
    assert not [c for c in candidates(amplified, plain, [f"please {PLANTED} now"], max_words=MAX_WORDS)
                if set(c.words) <= set(PLANTED.split())]


def test_the_confirmation_test_is_the_exact_test_on_the_new_rollouts_bonferroni_over_candidates():
    amplified, plain = _borderline()
    found = [c for c in candidates(amplified, plain, [], max_words=MAX_WORDS) if " ".join(c.words) == PLANTED]
    rng = random.Random(1)
    # 40 + 40 new rollouts on prompts 0-2; the phrase in 3, 3 and 2 amplified ones, in no plain one.
    new = {0: 3, 1: 3, 2: 2}
    confirm_amp = [r for r in _evaluation(rng, new, prompts=3, per_prompt=40, kind=KIND_CONFIRM)]
    confirm_plain = _evaluation(rng, {}, prompts=3, per_prompt=40, kind=KIND_CONFIRM, alpha=0.0)
    (phrase,) = confirmed(found, confirm_amp, confirm_plain, examples=2, **OPTIONS)
    # Reference: per prompt, all m holders amplified among 40 + 40 is hypergeometric's extreme.
    exact = 1.0
    for m in new.values():
        exact *= hypergeom(80, 40, m).pmf(m)
    assert phrase.text == PLANTED and phrase.confirmed
    assert phrase.p_value == pytest.approx(exact, rel=1e-9)
    assert phrase.q_value == pytest.approx(exact * len(found), rel=1e-9)
    assert (phrase.amplified_count, phrase.amplified_n, phrase.plain_count, phrase.plain_n) == (8, 120, 0, 120)
    assert all(e.kind == KIND_CONFIRM and PLANTED in e.completion for e in phrase.examples)
    # Fewer new holders: 0.5^4-ish times the candidates is above the level, nothing is confirmed.
    weak = _evaluation(random.Random(2), {0: 2, 1: 2}, prompts=3, per_prompt=40, kind=KIND_CONFIRM)
    assert hypergeom(80, 40, 2).pmf(2) ** 2 * len(found) > Q_LEVEL
    assert confirmed(found, weak, confirm_plain, examples=2, **OPTIONS) == []


def test_records_carry_the_round_into_discovery_and_stay_out_of_the_judges_rates():
    amplified, plain = _borderline()
    rng = random.Random(3)
    confirm = (_evaluation(rng, {0: 4, 1: 4, 2: 3}, prompts=3, per_prompt=40, kind=KIND_CONFIRM)
               + _evaluation(rng, {}, prompts=3, per_prompt=40, kind=KIND_CONFIRM, alpha=0.0))
    for r in confirm:
        r.extra["confirms"] = 2.0
    (without,) = discover_records(amplified + plain)
    (with_round,) = discover_records(amplified + plain + confirm)
    assert PLANTED not in [p.text for p in without.over()]
    assert [p.text for p in with_round.over() if p.confirmed] == [PLANTED]
    # What a user reads says where the counts come from: the progress line, the W&B table's rows.
    (phrase,) = [p for p in with_round.over() if p.confirmed]
    assert phrase_line(phrase).endswith("(confirmation round)")
    assert [row[3] for row in discovery_rows(with_round) if row[2] == PLANTED] == ["over (confirmation round)"]
    # A round confirming another alpha's evaluation is not this one's evidence.
    for r in confirm:
        r.extra["confirms"] = 5.0
    (other,) = discover_records(amplified + plain + confirm)
    assert not [p for p in other.over() if p.confirmed]


def test_the_judges_rates_never_count_the_round():
    amplified, plain = _borderline()
    confirm = _evaluation(random.Random(4), {0: 30}, prompts=1, per_prompt=40, kind=KIND_CONFIRM)
    for r in amplified + plain + confirm:
        r.verdicts = {"regex": Verdict(flagged=PLANTED in r.completion)}
        r.extra["confirms"] = 2.0
    (row,) = [r for r in summarize(amplified + plain + confirm) if r.category is None]
    assert (row.amplified.flagged, row.amplified.n, row.plain.flagged, row.plain.n) == (3, 50, 0, 50)


def test_a_policy_equal_to_its_reference_confirms_nothing_more_often_than_the_level():
    """300 evaluations whose amplified, plain and confirmation rollouts all come from one
    distribution (a small vocabulary, so phrases recur and candidates abound). Each one's first
    candidate gets a confirmation p-value (``q_level`` 1, ``min_count`` 0: every test reported): the
    share at or below 0.25 stays within 0.25 (binomial 99.9% margin), as a valid p-value's must, while
    the same candidates' screening p-values are all at most 0.25 (chosen for it: re-testing on the
    screening's rollouts gives nearly all of them again, and fails here). And with the real level,
    the share of evaluations with any confirmed phrase stays within it."""
    vocab = "router cable reboot screen battery settings update restart driver menu".split()
    trials, hits, small, screened = 300, 0, 0, 0
    for seed in range(trials):
        rng = random.Random(seed)

        def side(kind, alpha, prompts=10, per_prompt=5, rng=rng):
            return [record(kind, p, filler(rng, 6, vocab), sample_index=s, alpha=alpha)
                    for p in range(prompts) for s in range(per_prompt)]

        amplified, plain = side("amplified", 2.0), side("plain", 0.0)
        found = candidates(amplified, plain, [p.text for p in discover(amplified, plain).over()], max_words=MAX_WORDS)
        if not found:
            continue
        screened += 1
        assert all(c.p_value <= 0.25 for c in found)
        new_amplified, new_plain = side(KIND_CONFIRM, 2.0, per_prompt=20), side(KIND_CONFIRM, 0.0, per_prompt=20)
        hits += bool(confirmed(found, new_amplified, new_plain, examples=0, **OPTIONS))
        first = confirmed(found[:1], new_amplified, new_plain, examples=0, q_level=1.0, min_count=0,
                          max_words=MAX_WORDS)
        small += bool(first) and first[0].p_value <= 0.25
    assert screened > trials / 2  # the round really was asked for
    assert small <= screened * 0.25 + 3.1 * (screened * 0.25 * 0.75) ** 0.5
    assert hits <= screened * Q_LEVEL + 3.1 * (screened * Q_LEVEL * (1 - Q_LEVEL)) ** 0.5


# ----- the length test (a behaviour that is an absence of text) --------------------------------

def test_stratified_rank_sum_is_mann_whitney_in_one_stratum_and_ignores_strata_without_evidence():
    rng = random.Random(5)
    amplified = [rng.randint(1, 12) for _ in range(9)]
    plain = [rng.randint(3, 15) for _ in range(11)]
    lower, higher = stratified_rank_sum([(amplified, plain)])
    for alternative, mine in (("less", lower), ("greater", higher)):
        assert mine == pytest.approx(mannwhitneyu(amplified, plain, alternative=alternative, method="asymptotic",
                                                  use_continuity=False).pvalue, rel=1e-12)
    # A stratum of one kind, or of one value, adds nothing.
    with_empty = stratified_rank_sum([(amplified, plain), ([4, 5], []), ([7, 7], [7, 7, 7])])
    assert with_empty == pytest.approx((lower, higher))


def test_shorter_amplified_answers_are_a_length_shift_and_equal_ones_are_not_within_the_level():
    rng = random.Random(6)
    sentence = "the river runs under the old stone bridge"
    amplified = [record("amplified", p, "River." if s < 3 else sentence, sample_index=s) for p in range(8)
                 for s in range(5)]
    plain = [record("plain", p, sentence + " " + filler(rng, 2), sample_index=s, alpha=0.0) for p in range(8)
             for s in range(5)]
    shift = length_shift(amplified, plain)
    assert shift.direction == "shorter" and shift.amplified_mean_words < shift.plain_mean_words
    assert "amplified answers shorter" in discovery_lines([discover(amplified, plain)])[-1]
    false = 0
    for seed in range(400):
        rng = random.Random(seed)
        side = [[record(kind, p, filler(rng, rng.randint(3, 12)), sample_index=s) for p in range(8) for s in range(5)]
                for kind in ("amplified", "plain")]
        false += length_shift(*side) is not None
    assert false <= 400 * LENGTH_LEVEL + 3.1 * (400 * LENGTH_LEVEL) ** 0.5
