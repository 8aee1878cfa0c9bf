"""No judge at all: discovery only.

Without a judge the callback and the audit still sample amplified and plain rollouts and report
what amplification over- and under-produces (:mod:`lda_monitor.core.discovery`); the rollouts
carry no verdicts, so no flag-rate metric exists. Front ends use :func:`judge_or_none` where
they built the judge, and :data:`NO_JUDGE_NOTE` to say so once.
"""

from __future__ import annotations

from collections.abc import Sequence

NO_JUDGE_NOTE = ("lda-monitor: no judge given: discovery only (the phrases amplification over- and "
                 "under-produces); flag-rate metrics are absent")


class NoJudge:
    """A judge that judges nothing: every rollout gets no verdict."""

    name = "none"
    members = ()

    def evaluate(self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[dict]) -> dict:
        return {}

    def __repr__(self) -> str:
        return "NoJudge()"


def judge_or_none(spec):
    """The judge of ``spec`` (see :func:`lda_monitor.judges.build_judge`), or a :class:`NoJudge`
    when ``spec`` is None."""
    from . import build_judge

    return NoJudge() if spec is None else build_judge(spec)


def has_judge(judge) -> bool:
    return not isinstance(judge, NoJudge)
