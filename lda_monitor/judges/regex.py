"""Pattern judges: flag a completion when any pattern occurs (backdoor phrases, refusals).

Where a pattern judge's verdict was decided: the shortest prefix of the completion whose judged
text (reasoning stripped, as :meth:`~.base.Judge.judge` sees it) already matches. It is reported
only for *monotone* patterns, for which a prefix that matches keeps matching however the text
continues, so the flag is final at that point and the rest of the rollout cannot change it. With
backtracking, whether a match exists depends on the characters up to its end and on what
assertions read; a pattern is monotone unless something reads past the match's end or commits
before seeing it. Refused (reported as None, i.e. decided by the whole text), conservatively:

* end anchors ``$``, ``\\Z`` anywhere, and word boundaries ``\\b``, ``\\B`` (``evil\\b`` matches
  ``evil`` but not ``evils``) except where the top-level sequence still consumes at least one
  character after them (``\\bevil``: the boundary then reads only characters inside the match);
* lookaheads ``(?=...)``, ``(?!...)`` anywhere, and conditionals ``(?(1)...)``;
* atomic groups and possessive repeats, which can consume later text and then fail.

Start anchors and lookbehinds read only earlier text and are kept. A completion that contains
the reasoning open tag gets no position either: its text shrinks when the block opens.
"""

from __future__ import annotations

import re
import re._constants as sre
import re._parser as sre_parse
from dataclasses import replace

from ..errors import UserInputError
from .base import Judge, Verdict, strip_reasoning

_BOUNDARY = {sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY, sre.AT_LOC_BOUNDARY, sre.AT_LOC_NON_BOUNDARY,
             sre.AT_UNI_BOUNDARY, sre.AT_UNI_NON_BOUNDARY}
_FORWARD_AT = {sre.AT_END, sre.AT_END_LINE, sre.AT_END_STRING, *_BOUNDARY}
_COMMITTING = {sre.GROUPREF_EXISTS, sre.ATOMIC_GROUP, sre.POSSESSIVE_REPEAT}


def _monotone(node) -> bool:
    if isinstance(node, sre_parse.SubPattern):
        return all(_monotone(item) for item in node.data)
    if not isinstance(node, tuple | list):
        return True
    if len(node) == 2 and node[0] in _COMMITTING:
        return False
    if len(node) == 2 and node[0] is sre.AT and node[1] in _FORWARD_AT:
        return False
    if len(node) == 2 and node[0] in (sre.ASSERT, sre.ASSERT_NOT) and node[1][0] > 0:
        return False
    return all(_monotone(item) for item in node)


def is_monotone(pattern: re.Pattern) -> bool:
    """Whether a match, once present in a text, is present in every continuation of it (see the
    module doc; conservative: False for every construct not argued safe there)."""
    tree = sre_parse.parse(pattern.pattern, pattern.flags)
    items = list(tree.data)
    for i, item in enumerate(items):
        if item[0] is sre.AT and item[1] in _BOUNDARY:
            if sre_parse.SubPattern(tree.state, items[i + 1:]).getwidth()[0] >= 1:
                continue  # a boundary before consumed text reads only characters of the match
        if not _monotone(item):
            return False
    return True


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
        self.monotone = all(is_monotone(p) for p in self.patterns)

    def _search(self, text: str) -> re.Match | None:
        return next((m for p in self.patterns if (m := p.search(text))), None)

    def judge(self, prompts, completions, metadata):
        out = []
        for text in completions:
            hit = self._search(text)
            out.append(Verdict(flagged=hit is not None, score=1.0 if hit else 0.0,
                               label="match" if hit else "no-match",
                               explanation=f"matched {hit.group(0)!r}" if hit else None))
        return out

    def locate(self, completion: str, verdict: Verdict) -> Verdict:
        """The shortest flagging prefix (bisection: flagging is monotone in the prefix length for
        monotone patterns) and the span of its match, in ``completion``'s coordinates."""
        if self.reasoning and self.reasoning[0] in completion:
            return verdict
        # Without a reasoning block the judged text is the completion, stripped when a pair is set.
        lead = len(completion) - len(completion.lstrip()) if self.reasoning else 0

        def hit_in(length: int) -> re.Match | None:
            return self._search(strip_reasoning(completion[:length], self.reasoning))

        hit = hit_in(len(completion))
        if hit is None:
            return verdict
        if not self.monotone:
            return replace(verdict, span=(hit.start() + lead, hit.end() + lead))
        lo, hi = -1, len(completion)  # invariant: the prefix of length hi flags, of length lo does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if hit_in(mid) else (mid, hi)
        hit = hit_in(hi)
        return replace(verdict, decided_at=hi, span=(hit.start() + lead, hit.end() + lead))


class SubstringJudge(RegexJudge):
    """Flags when any literal substring occurs (case-insensitive with ``ignore_case``)."""

    name = "substring"

    def __init__(self, substrings, *, ignore_case: bool = False, name: str | None = None, **base):
        substrings = [substrings] if isinstance(substrings, str) else list(substrings)
        super().__init__([re.escape(s) for s in substrings], ignore_case=ignore_case, name=name, **base)
