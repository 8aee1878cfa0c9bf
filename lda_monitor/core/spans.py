"""Marking parts of a completion: what a judge matched, where a discovered phrase occurs.

The report marks them in HTML, the terminal between brackets; both go through :func:`mark_spans`,
which escapes the pieces between and inside the marks on their own (marks are never inserted into
text that was already escaped, so an ``&amp;`` is never split).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence


def needle_spans(text: str, needles: Iterable[str]) -> list[tuple[int, int]]:
    """[start, end) of every occurrence of each needle in ``text``, left to right without overlap;
    where two needles start at one place, the longer one."""
    needles = sorted({n for n in needles if n}, key=len, reverse=True)
    out, i = [], 0
    while i < len(text):
        hits = [(pos, n) for pos, n in ((text.find(n, i), n) for n in needles) if pos >= 0]
        if not hits:
            break
        pos, needle = min(hits, key=lambda h: (h[0], -len(h[1])))
        out.append((pos, pos + len(needle)))
        i = pos + len(needle)
    return out


def mark_spans(text: str, spans: Sequence[Sequence[int]], left: str = "[[", right: str = "]]",
               escape: Callable[[str], str] = str) -> str:
    """``text`` with each [start, end) span (in order, not overlapping) between ``left`` and
    ``right``; ``escape`` is applied to every piece of the text, never to the marks."""
    out, i = [], 0
    for start, end in spans:
        out += [escape(text[i:start]), left, escape(text[start:end]), right]
        i = end
    return "".join(out) + escape(text[i:])
