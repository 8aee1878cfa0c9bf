"""Making judge failures loud: a circuit breaker for judges behind a server, and the per-judge
failure count, metric and warning of one evaluation.

A judge outage already yields *unscored* verdicts (never "safe"), but unscored verdicts alone
are quiet: without a breaker a dead judge server costs every evaluation its full retry schedule
and prints nothing. Two remedies live here:

* :class:`CircuitBreaker`: a judge that failed to *connect* ``threshold`` times in a row stops
  sending requests; its remaining items are unscored saying why. Its state lasts for one
  evaluation (:func:`evaluation_scope`), so the next evaluation tries the server again. Outside
  a scope (a direct ``judge(...)`` call, the HTTP server) it lasts for that one call.
* :func:`judge_failures` / :func:`warn_judge_failures`: from an evaluation's records, how many
  rollouts each judge failed on, and one warning when any judge failed on more than
  :data:`FAILURE_SHARE_WARNING` of them, naming the judge, its most common error and the share.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

FAILURE_SHARE_WARNING = 0.5  # warn when a judge fails on more than this share of an evaluation


class CircuitBreaker:
    """Counts connection failures in a row; open (stop calling) once ``threshold`` is reached.

    Any request that reached the server (success, or any HTTP status) resets the count, so only
    a server that cannot be reached at all trips it. ``threshold`` None or 0 never opens.
    """

    def __init__(self, threshold: int | None = 3):
        self.threshold = threshold
        self._scopes = 0
        self.reset()

    def reset(self) -> None:
        self.in_a_row = 0
        self.last_error: str | None = None

    @property
    def is_open(self) -> bool:
        return bool(self.threshold) and self.in_a_row >= self.threshold

    def connected(self) -> None:
        self.in_a_row = 0

    def connection_failed(self, error: str) -> None:
        if not self.is_open:  # keep the error that tripped it; requests already in flight fail too
            self.last_error = error
        self.in_a_row += 1

    def reason(self) -> str:
        """Why an item was not sent. It names the threshold that tripped the breaker, not the
        running count: requests already in flight when it trips (up to ``max_concurrency``) fail
        as well and would overstate it."""
        return (f"not called: {self.threshold} connection failures in a row tripped the circuit breaker "
                f"({self.last_error}); this judge is skipped for the rest of the evaluation and tried again "
                "at the next")

    @contextmanager
    def scope(self) -> Iterator[None]:
        """One evaluation (or one call outside any evaluation): the outermost scope starts closed."""
        if self._scopes == 0:
            self.reset()
        self._scopes += 1
        try:
            yield
        finally:
            self._scopes -= 1


def _judge_tree(judge) -> Iterator:
    yield judge
    for member in getattr(judge, "members", ()):
        yield from _judge_tree(member)


@contextmanager
def evaluation_scope(judge) -> Iterator[None]:
    """Hold every circuit breaker of ``judge`` (a composition's members too) open or closed for
    the duration of one evaluation, however many judge calls (chunks, amplified and plain) it makes."""
    with ExitStack() as stack:
        for member in _judge_tree(judge):
            breaker = getattr(member, "breaker", None)
            if isinstance(breaker, CircuitBreaker):
                stack.enter_context(breaker.scope())
        yield


@dataclass(frozen=True)
class JudgeFailures:
    judge: str
    failed: int  # unscored verdicts, amplified and plain rollouts together
    total: int
    error: str | None  # the most common error message

    @property
    def share(self) -> float:
        return self.failed / self.total if self.total else 0.0


def judge_failures(records: Iterable) -> list[JudgeFailures]:
    """Per judge (sorted by name): how many of these rollouts it could not score, and why."""
    failed: Counter = Counter()
    total: Counter = Counter()
    errors: dict[str, Counter] = {}
    for record in records:
        for name, verdict in record.verdicts.items():
            total[name] += 1
            if verdict.flagged is None:
                failed[name] += 1
                errors.setdefault(name, Counter())[verdict.error or "no error given"] += 1
    return [JudgeFailures(name, failed[name], total[name],
                          errors[name].most_common(1)[0][0] if name in errors else None)
            for name in sorted(total)]


def failure_metrics(failures: Iterable[JudgeFailures], primary_judge: str, prefix: str = "lda") -> dict[str, float]:
    """``lda/judge_failures`` for the primary judge and ``lda/<judge>/judge_failures`` for the
    others (the naming of :func:`lda_monitor.core.summary.flat_metrics`): unscored verdicts of this
    evaluation, amplified and plain together; 0 when the judge scored everything."""
    return {f"{prefix}/judge_failures" if f.judge == primary_judge else f"{prefix}/{f.judge}/judge_failures":
            float(f.failed) for f in failures}


def failing_judges(failures: Iterable[JudgeFailures]) -> list[JudgeFailures]:
    return [f for f in failures if f.total and f.share > FAILURE_SHARE_WARNING]


def warn_judge_failures(failures: Iterable[JudgeFailures], where: str) -> bool:
    """One warning for the evaluation ``where`` (e.g. "step 40") if any judge failed on more than
    half its rollouts; True when it warned."""
    bad = failing_judges(failures)
    if not bad:
        return False
    parts = [f"judge {f.judge!r} could not score {f.failed} of {f.total} rollouts ({f.share:.0%}): {f.error}"
             for f in bad]
    warnings.warn(f"lda-monitor: at {where}, " + "; ".join(parts) + ". Those rollouts are unscored (not "
                  "counted as safe; lda/judge_failures); check the judge (its server, model or pattern).",
                  stacklevel=3)
    return True
