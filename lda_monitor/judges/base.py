"""The judge protocol: a batch of (prompt, completion) in, one verdict per item out.

A verdict's ``flagged`` is True, False, or None = unscored. A judge that fails (a timeout, a
parse error, an exception) must return unscored verdicts with the error; the statistics count
those separately and never fold them into "not flagged".

A flagged verdict may say *where* it was decided: ``decided_at`` is the length of the shortest
prefix of the completion whose text already flags, reported only when no continuation could undo
the flag (a pattern without end anchors or lookaheads, see :mod:`.regex`); None means the whole
text was needed (an LLM or classifier reads all of it). The natural-rate estimate weighs a
flagged rollout only up to the token that completed that prefix. ``span`` is the (start, end) of
the text that matched, in the completion, for highlighting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

DEFAULT_REASONING = ("<think>", "</think>")


@dataclass(frozen=True)
class Verdict:
    flagged: bool | None
    score: float | None = None
    label: str | None = None
    explanation: str | None = None
    error: str | None = None
    decided_at: int | None = None
    span: tuple[int, int] | None = None

    @classmethod
    def unscored(cls, error: str) -> Verdict:
        return cls(flagged=None, error=error)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        span = data.get("span")
        return cls(**{k: data.get(k) for k in ("flagged", "score", "label", "explanation", "error", "decided_at")},
                   span=tuple(span) if span is not None else None)


def strip_reasoning(text: str, pair: tuple[str, str] | None = DEFAULT_REASONING) -> str:
    """Drop ``<think>...</think>`` blocks (and an unclosed trailing one): judges read the answer."""
    if not pair:
        return text
    open_tag, close_tag = (re.escape(t) for t in pair)
    text = re.sub(f"{open_tag}.*?{close_tag}", "", text, flags=re.S)
    return re.sub(f"{open_tag}.*\\Z", "", text, flags=re.S).strip()


class Judge:
    """Base class. Subclasses implement :meth:`judge`; callers use ``judge(...)`` or
    :meth:`evaluate` (which also returns every member's verdicts for compositions)."""

    name = "judge"

    def __init__(self, name: str | None = None, reasoning: tuple[str, str] | None = DEFAULT_REASONING):
        if name:
            self.name = name
        self.reasoning = reasoning

    def judge(self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[dict]) -> list[Verdict]:
        raise NotImplementedError

    def _guarded(self, prompts, completions, metadata) -> list[Verdict]:
        """Run :meth:`judge`; any exception becomes unscored verdicts naming it (never 'safe')."""
        raw = list(completions)
        completions = [strip_reasoning(c, self.reasoning) for c in raw]
        metadata = list(metadata) if metadata is not None else [{} for _ in prompts]
        try:
            verdicts = list(self.judge(list(prompts), completions, metadata))
        except Exception as exc:  # a judge outage must be visible, not fatal
            return [Verdict.unscored(f"{self.name}: {type(exc).__name__}: {exc}") for _ in prompts]
        if len(verdicts) != len(prompts):
            return [Verdict.unscored(f"{self.name}: returned {len(verdicts)} verdicts for {len(prompts)} items")
                    for _ in prompts]
        return [self.locate(text, v) if v.flagged else v for text, v in zip(raw, verdicts, strict=True)]

    def locate(self, completion: str, verdict: Verdict) -> Verdict:
        """``verdict`` (flagged) with where in ``completion`` (the text before reasoning is
        stripped) it was decided; a judge that reads the whole text leaves it None."""
        return verdict

    def evaluate(self, prompts, completions, metadata=None) -> dict[str, list[Verdict]]:
        """Verdicts keyed by judge name: this judge's own (and its members', if any)."""
        return {self.name: self._guarded(prompts, completions, metadata)}

    def __call__(self, prompts, completions, metadata=None) -> list[Verdict]:
        return self.evaluate(prompts, completions, metadata)[self.name]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
