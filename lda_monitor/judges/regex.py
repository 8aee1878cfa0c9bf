"""Pattern judges: flag a completion when any pattern occurs (backdoor phrases, refusals)."""

from __future__ import annotations

import re

from ..errors import UserInputError
from .base import Judge, Verdict


class RegexJudge(Judge):
    """Flags when any of ``patterns`` (Python regular expressions) matches."""

    name = "regex"

    def __init__(self, patterns, *, ignore_case: bool = False, name: str | None = None, **base):
        super().__init__(name=name, **base)
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        if not patterns:
            raise UserInputError("a regex judge needs at least one pattern")
        flags = re.IGNORECASE if ignore_case else 0
        try:
            self.patterns = [re.compile(p, flags) for p in patterns]
        except re.error as exc:
            raise UserInputError(f"bad regex judge pattern: {exc}") from None

    def judge(self, prompts, completions, metadata):
        out = []
        for text in completions:
            hit = next((m for p in self.patterns if (m := p.search(text))), None)
            out.append(Verdict(flagged=hit is not None, score=1.0 if hit else 0.0,
                               label="match" if hit else "no-match",
                               explanation=f"matched {hit.group(0)!r}" if hit else None))
        return out


class SubstringJudge(RegexJudge):
    """Flags when any literal substring occurs (case-insensitive with ``ignore_case``)."""

    name = "substring"

    def __init__(self, substrings, *, ignore_case: bool = False, name: str | None = None, **base):
        substrings = [substrings] if isinstance(substrings, str) else list(substrings)
        super().__init__([re.escape(s) for s in substrings], ignore_case=ignore_case, name=name, **base)
