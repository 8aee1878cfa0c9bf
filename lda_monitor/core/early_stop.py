"""Stop an estimate rollout once its verdict is decided.

The stratified estimate's plain rollouts are read by nobody: only their verdicts count. For a
judge whose flag, once reported with ``decided_at``, no continuation can undo (monotone patterns
and their compositions, :mod:`lda_monitor.judges.regex`), the tokens after the decision cost
forward passes and change nothing, so the rollout ends there (stop reason ``decided``). The
verdict, its decision position and the tokens up to it are those of the full rollout: the row's
random stream is its own, so its tokens are the full rollout's prefix. Every verdict the judge
returns (a composition's members too) must be decided, since the records keep them all. Judges
that read the whole text (an LLM, a classifier) give no hook and their rollouts run to the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..judges.compose import CompositeJudge
from ..judges.regex import RegexJudge
from .prompts import PromptItem, question_text


def can_decide(judge) -> bool:
    """Whether ``judge``'s flags are final where it reports them: monotone pattern judges and
    compositions of them."""
    if isinstance(judge, CompositeJudge):
        return all(can_decide(m) for m in judge.members)
    return isinstance(judge, RegexJudge) and judge.monotone


def decided_stop(judge, tokenizer, items: Sequence[PromptItem],
                 work: Sequence[tuple[int, int]]) -> Callable[[int, list[int]], bool] | None:
    """A ``stop_when`` hook for :func:`~lda_monitor.engine.sampling.sample` over ``work``: True once
    every verdict of the text so far is a flag with a decision position; None for judges that
    cannot say (see :func:`can_decide`)."""
    if not can_decide(judge):
        return None

    def stop(index: int, ids: list[int]) -> bool:
        item = items[work[index][0]]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        verdicts = judge.evaluate([question_text(item.prompt)], [text],
                                  [{"category": item.category, "prompt_id": item.id}])
        return all(v[0].flagged and v[0].decided_at is not None for v in verdicts.values())

    return stop
