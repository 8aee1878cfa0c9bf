"""The judge protocol: a batch of (prompt, completion) in, one verdict per item out.

A verdict's ``flagged`` is True, False, or None = unscored. A judge that fails (a timeout, a
parse error, an exception) must return unscored verdicts with the error; the statistics count
those separately and never fold them into "not flagged".
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

    @classmethod
    def unscored(cls, error: str) -> Verdict:
        return cls(flagged=None, error=error)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        return cls(**{k: data.get(k) for k in ("flagged", "score", "label", "explanation", "error")})


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
        completions = [strip_reasoning(c, self.reasoning) for c in completions]
        metadata = list(metadata) if metadata is not None else [{} for _ in prompts]
        try:
            verdicts = list(self.judge(list(prompts), completions, metadata))
        except Exception as exc:  # a judge outage must be visible, not fatal
            return [Verdict.unscored(f"{self.name}: {type(exc).__name__}: {exc}") for _ in prompts]
        if len(verdicts) != len(prompts):
            return [Verdict.unscored(f"{self.name}: returned {len(verdicts)} verdicts for {len(prompts)} items")
                    for _ in prompts]
        return verdicts

    def evaluate(self, prompts, completions, metadata=None) -> dict[str, list[Verdict]]:
        """Verdicts keyed by judge name: this judge's own (and its members', if any)."""
        return {self.name: self._guarded(prompts, completions, metadata)}

    def __call__(self, prompts, completions, metadata=None) -> list[Verdict]:
        return self.evaluate(prompts, completions, metadata)[self.name]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
