"""From where a verdict was decided in the text to the token that decided it.

A judge reports ``decided_at``, the length of the shortest prefix of the completion that already
flags (:class:`~lda_monitor.judges.base.Verdict`). The natural-rate estimate needs the *token*:
the first one whose decoded prefix of the rollout contains that text. Records carry, per
completion token, how much of the completion text the prefix up to it decodes to
(``token_ends``), so that mapping needs no tokenizer later (``rejudge`` runs without models).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def token_text_ends(tokenizer, ids: Sequence[int], completion: str) -> list[int] | None:
    """For each token t, the length of the completion's text that ``ids[:t + 1]`` decodes to
    (the common prefix with ``completion``: a token that ends inside a multi-byte character
    decodes to a replacement character, which completes nothing yet). None when no decoding of
    all of ``ids`` gives ``completion`` (a decode setting this module does not know)."""
    if not ids:
        return []
    for skip in (False, True):
        if tokenizer.decode(list(ids), skip_special_tokens=skip) != completion:
            continue
        prefixes = tokenizer.batch_decode([list(ids[: t + 1]) for t in range(len(ids))], skip_special_tokens=skip)
        ends, best = [], 0
        for text in prefixes:
            best = max(best, _common_prefix(text, completion))  # a later prefix never completes less
            ends.append(best)
        return ends
    return None


def decision_token(token_ends: Sequence[int] | None, decided_at: int | None) -> int | None:
    """Index of the token that completed the first ``decided_at`` characters (None when either is
    unknown, or the text is never completed)."""
    if token_ends is None or decided_at is None:
        return None
    t = bisect_left(token_ends, decided_at)
    return t if t < len(token_ends) else None


def decision_tokens(token_ends: Sequence[int] | None, verdicts: dict) -> dict[str, int] | None:
    """Judge name -> decision token of each flagged verdict that reports where it was decided."""
    out = {name: t for name, v in verdicts.items()
           if v.flagged and (t := decision_token(token_ends, v.decided_at)) is not None}
    return out or None
