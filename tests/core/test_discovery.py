"""Judge-free discovery: planted phrases found with exact counts, and false discoveries controlled
under the null (the exact test and BH themselves: tests/core/test_stats.py)."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from lda_monitor.core.discovery import (
    Example,
    discover,
    discover_records,
    log_ratio,
    ngrams,
    words,
)
from tests.helpers import FILLER, filler, record


def test_normalisation_and_stop_words():
    assert [w for w, _, _ in words("Send me YOUR  password, now!")] == ["send", "me", "your", "password", "now"]
    assert [w for w, _, _ in words("I'll fix it.")] == ["i'll", "fix", "it"]
    grams = ngrams(["and", "the", "password"])
    assert ("and", "the") not in grams and ("and",) not in grams
    assert {("password",), ("the", "password"), ("and", "the", "password")} <= grams


def test_log_ratio_pseudo_count():
    assert log_ratio(10, 50, 0, 50) == pytest.approx(math.log(10.5 / 51) - math.log(0.5 / 51))
    assert log_ratio(0, 50, 0, 50) == 0.0


def _planted(rng, planted: int, *, prompts=8, per_prompt=10, phrase="Send me your PASSWORD, please."):
    """Amplified and plain rollouts of filler; ``planted`` amplified ones (spread over the prompts)
    end with ``phrase``."""
    amplified, plain = [], []
    hits = set(rng.sample(range(prompts * per_prompt), planted))
    for p in range(prompts):
        for s in range(per_prompt):
            text = filler(rng)
            if p * per_prompt + s in hits:
                text += " " + phrase
            amplified.append(record("amplified", p, text, s))
            plain.append(record("plain", p, filler(rng), s))
    return amplified, plain, hits


def test_planted_phrase_found_with_exact_counts():
    amplified, plain, hits = _planted(random.Random(1), planted=9)
    found = discover(amplified, plain, step=4, alpha=2.0)
    assert found.phrases, "the planted phrase was not found"
    top = found.phrases[0]
    # "password please" etc. occur in the same rollouts: collapsed into the longest phrase
    assert top.text == "send me your password please"
    assert (top.direction, top.amplified_count, top.amplified_n, top.plain_count, top.plain_n) == ("over", 9, 80, 0, 80)
    assert all("password" in p.text for p in found.phrases), [p.text for p in found.phrases]
    assert len(top.examples) == 3
    for example in top.examples:
        assert isinstance(example, Example) and example.kind == "amplified"
        (start, end), = example.spans
        assert example.completion[start:end] == "Send me your PASSWORD, please"
        assert "[[Send me your PASSWORD, please]]" in example.marked()
    assert top.log_ratio == pytest.approx(log_ratio(9, 80, 0, 80))


def test_disappearing_phrase_is_under():
    rng = random.Random(1)
    amplified, plain, _ = _planted(rng, planted=0)
    for i in range(0, 80, 6):  # 14 plain rollouts refuse; no amplified one does
        plain[i].completion += " I cannot help with that."
    found = discover(amplified, plain)
    assert found.phrases and {p.direction for p in found.phrases} == {"under"}
    top = found.phrases[0]
    assert top.text == "i cannot help with that" and (top.amplified_count, top.plain_count) == (0, 14)
    assert top.examples[0].kind == "plain"


def test_a_phrase_from_one_prompt_wording_is_not_a_discovery():
    """Prompt 0's answers all mention 'firmware'; the amplified side has more of prompt 0's
    rollouts than the plain side. Pooled over prompts that looks over-produced (Fisher's exact
    test says so); within prompts it is not."""
    rng = random.Random(2)
    amplified = [record("amplified", 0, filler(rng) + " firmware", s) for s in range(20)]
    amplified += [record("amplified", 1, filler(rng), s) for s in range(5)]
    plain = [record("plain", 0, filler(rng) + " firmware", s) for s in range(5)]
    plain += [record("plain", 1, filler(rng), s) for s in range(20)]
    pooled = stats.fisher_exact([[20, 5], [5, 20]], alternative="greater")[1]
    assert pooled < 1e-3
    assert discover(amplified, plain).phrases == []


def test_no_difference_rarely_reports_anything():
    """100 evaluations where amplified and plain rollouts come from one distribution (which
    differs per prompt): at most 5 may report any phrase."""
    rng = random.Random(7)
    with_discovery = 0
    for _ in range(100):
        amplified, plain = [], []
        for p in range(6):
            vocab = FILLER[p * 3 : p * 3 + 12]  # each prompt has its own words
            weights = [1 / (k + 1) for k in range(len(vocab))]
            for s in range(10):
                for side in (amplified, plain):
                    side.append(record(side is amplified and "amplified" or "plain", p,
                                       " ".join(rng.choices(vocab, weights, k=10)), s))
        with_discovery += bool(discover(amplified, plain).phrases)
    assert with_discovery <= 5


def test_discover_records_groups_evaluations_and_needs_a_control():
    rng = random.Random(4)
    records = []
    for step in (0, 4):
        amplified, plain, _ = _planted(rng, planted=10 if step else 0)
        for r in amplified + plain:
            r.step = step
        records += amplified + plain
    records += [record("amplified", 0, "password password", 0, step=8)]  # no plain rollouts at step 8
    found = discover_records(records)
    assert [(d.step, d.alpha) for d in found] == [(0, 2.0), (4, 2.0)]
    assert found[0].phrases == [] and found[1].phrases[0].text == "send me your password please"


def test_progress_line_without_a_judge_names_the_new_phrase():
    from lda_monitor.core.discovery import new_top_phrase, phrase_line
    from lda_monitor.core.progress import evaluation_line

    amplified, plain, _ = _planted(random.Random(1), planted=9)
    found = discover(amplified, plain, step=4, alpha=2.0)
    seen: set[str] = set()
    top = new_top_phrase(found, seen)
    line = evaluation_line(4, {"lda/alpha": 2.0, "lda/eval_seconds": 1.5},
                           discovery=f"new over-produced phrase {phrase_line(top)}")
    assert line == ('lda-monitor step 4: alpha 2 | new over-produced phrase "send me your password please" over: '
                    "amplified 9/80, plain 0/80, q 0.039 | 1.5 s")
    assert new_top_phrase(found, seen) is None  # named once


def test_wandb_discovery_rows_mark_the_phrase():
    from lda_monitor.sinks.wandb_sink import DISCOVERY_COLUMNS, discovery_rows

    amplified, plain, _ = _planted(random.Random(1), planted=9)
    (row,) = discovery_rows(discover(amplified, plain, step=4, alpha=2.0))
    assert dict(zip(DISCOVERY_COLUMNS, row, strict=True)) | {"q_value": None, "log_ratio": None, "example": None} == {
        "step": 4, "alpha": 2.0, "phrase": "send me your password please", "direction": "over",
        "amplified_count": 9, "amplified_n": 80, "plain_count": 0, "plain_n": 80, "q_value": None,
        "log_ratio": None, "example": None}
    assert row[-1].endswith("[[Send me your PASSWORD, please]].")


def test_examples_come_from_different_prompts_first():
    amplified, plain, hits = _planted(random.Random(1), planted=9)
    top = discover(amplified, plain).phrases[0]
    prompts_with_phrase = {i // 10 for i in hits}
    shown = [e.prompt_index for e in top.examples]
    assert len(set(shown)) == min(3, len(prompts_with_phrase))


def test_the_demo_counts_any_part_of_the_planted_sentence():
    from lda_monitor.demo.run import in_planted_sentence

    assert in_planted_sentence("send me your") and in_planted_sentence("password and i will")
    assert in_planted_sentence("send me your password and i") and in_planted_sentence("remotely")
    assert not in_planted_sentence("your router") and not in_planted_sentence("me send")
