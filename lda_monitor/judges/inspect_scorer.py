"""An inspect_ai scorer as our judge: ``judge="inspect:package.module:scorer_function"``.

Safety engineers who already wrote scorers for their inspect tasks run them inside the monitor
unchanged. Each (prompt, completion) becomes the ``TaskState`` inspect would have after
``generate()`` (the prompt as the user turn, the completion as the model's output, the prompt's
metadata as the sample's) and the scorer is awaited on it with the ``target`` given (a prompt's
own ``metadata["target"]`` wins), so scorers that compare against a target, such as
``includes()``, work too.

How a score becomes a verdict: a correct answer ("C", ``True``, or a number at or above
``threshold``) is flagged; "I", ``False`` and smaller numbers are not; a scorer that declines (no
score), an unscored score (NaN, inspect's ``Score.unscored``), a "no answer" ("N") or a value
that reads as no number is unscored: it is never counted as "not flagged". A partial ("P") reads
as 0.5, as in inspect's own metrics.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from ..errors import UserInputError
from .base import Judge, Verdict
from .llm import run_coroutine  # an inspect eval scores inside its event loop

KIND = "inspect"
INSTALL_HINT = 'pip install "lda-monitor[inspect]"'


def load_scorer_factory(target: str):
    """The scorer factory ``module:function`` names (an inspect ``@scorer`` function)."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise UserInputError(f"judge 'inspect:{target}': name the scorer as 'inspect:package.module:function', "
                             "e.g. 'inspect:inspect_ai.scorer:includes'")
    import importlib

    try:
        importlib.import_module("inspect_ai")
    except ImportError:
        raise UserInputError(f"judge 'inspect:{target}' needs inspect_ai: {INSTALL_HINT}") from None
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UserInputError(f"judge 'inspect:{target}': cannot import the scorer: {exc}") from None
    if not callable(obj):
        raise UserInputError(f"judge 'inspect:{target}': {obj!r} is not a scorer function")
    return obj


class InspectScorerJudge(Judge):
    """Our judge protocol over an inspect_ai scorer; see the module docstring."""

    def __init__(self, scorer: str, *, target: str | list[str] = "", threshold: float = 1.0, name: str | None = None,
                 scorer_args: dict | None = None, reasoning=None):
        super().__init__(name or f"inspect:{scorer.rpartition(':')[2]}", reasoning=reasoning)
        self.spec = scorer
        self.target = target
        self.threshold = threshold
        self.scorer = load_scorer_factory(scorer)(**(scorer_args or {}))

    def judge(self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[dict]) -> list[Verdict]:
        async def all_scores():
            return await asyncio.gather(*(self._score(i, p, c, m) for i, (p, c, m) in
                                          enumerate(zip(prompts, completions, metadata, strict=True))))

        return list(run_coroutine(all_scores()))

    async def _score(self, index: int, prompt: str, completion: str, metadata: dict) -> Verdict:
        from inspect_ai.model import ChatMessageUser, ModelName, ModelOutput
        from inspect_ai.scorer import Target
        from inspect_ai.solver import TaskState

        state = TaskState(model=ModelName("lda/judged"), sample_id=index, epoch=1, input=prompt,
                          messages=[ChatMessageUser(content=prompt)],
                          output=ModelOutput.from_content(model="lda", content=completion), metadata=dict(metadata))
        try:
            score = await self.scorer(state, Target(metadata.get("target", self.target)))
        except Exception as exc:  # one sample's failure is that sample's, not the batch's
            return Verdict.unscored(f"{self.name}: {type(exc).__name__}: {exc}")
        return self.verdict(score)

    def verdict(self, score) -> Verdict:
        """The verdict a Score reads as (see the module docstring)."""
        if score is None:
            return Verdict.unscored(f"{self.name}: the scorer declined to score")
        value = score.value
        label = str(value) if isinstance(value, str) else None
        number = _as_number(value)
        if number is None or math.isnan(number):
            reason = "; ".join(str(x) for x in (score.reason, score.explanation) if x) or f"value {value!r}"
            return Verdict(flagged=None, label=label, explanation=score.explanation,
                           error=f"{self.name}: unscored ({reason})")
        return Verdict(flagged=number >= self.threshold, score=number, label=label, explanation=score.explanation)


# inspect's letter grades (inspect_ai.scorer CORRECT / INCORRECT / PARTIAL); "N" (no answer) reads as none.
_LETTERS = {"C": 1.0, "I": 0.0, "P": 0.5}


def _as_number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value.upper() in _LETTERS:
            return _LETTERS[value.upper()]
        try:
            return float(value)
        except ValueError:
            return None
    return None  # a dict or list of values: which one flags is the scorer's to say
