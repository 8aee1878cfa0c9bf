"""Marking spans: leftmost-longest needles, and marks that never enter escaped text."""

from __future__ import annotations

import html
import re

import pytest

from lda_monitor.core.spans import mark_spans, needle_spans


@pytest.mark.parametrize("text, needles", [
    ("the cat sat on the cathedral", ["cat", "cathedral", "the"]),
    ("aaaa", ["aa", "a"]),
    ("no match here", ["zebra", ""]),
    ("<b>&amp;</b> & <b>", ["<b>", "&"]),
    ("", ["x"]),
])
def test_needle_spans_are_the_leftmost_longest_matches(text, needles):
    # Reference: Python's regex alternation tries alternatives in order, so longest-first
    # alternatives give the leftmost-longest non-overlapping matches.
    kept = sorted({n for n in needles if n}, key=len, reverse=True)
    expected = [m.span() for m in re.finditer("|".join(map(re.escape, kept)), text)] if kept else []
    assert needle_spans(text, needles) == expected


def test_marks_go_around_escaped_pieces():
    text = 'say <script>alert("x")</script> & go'
    spans = needle_spans(text, ["<script>", "&"])
    marked = mark_spans(text, spans, "<mark>", "</mark>", escape=html.escape)
    assert marked == ('say <mark>&lt;script&gt;</mark>alert(&quot;x&quot;)&lt;/script&gt; <mark>&amp;</mark> go')
    assert html.unescape(marked.replace("<mark>", "").replace("</mark>", "")) == text
    assert mark_spans("a banana split", [[2, 8]]) == "a [[banana]] split"
