"""What a person watching a terminal or a log file sees while lda-monitor works.

* :func:`evaluation_line`: the callback's one line per evaluation (step, alpha, amplified and
  plain counts and rates, the natural-rate estimate or why it was withheld, unscored, the top
  new phrase discovery found, seconds), logged through :func:`progress_logger`; the Trainer's own
  rows are 25-key dicts nobody reads while training, and hold numbers only (no reason).
* :class:`EvaluationProgress`: rollouts done / total per phase of one evaluation (callback step
  or audit unit), elapsed and left: tqdm bars on a terminal, periodic plain lines otherwise (a
  training job's log file would fill with carriage-return frames).
* :func:`summary_table`: the audit's closing table, with rates, Wilson intervals and the
  checkpoint, not bare counts.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

PROGRESS_LOGGER = "lda_monitor.core.progress"


def progress_logger() -> logging.Logger:
    """The ``lda_monitor.core.progress`` logger at INFO. When the program configured no logging at all
    (the common case in a training script) it writes plain lines to stderr itself; otherwise the
    records propagate to the program's handlers. Silence it with the ``log_progress`` config key
    or ``logging.getLogger("lda_monitor.core.progress").setLevel(logging.WARNING)``."""
    logger = logging.getLogger(PROGRESS_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = BarSafeHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    return logger


class BarSafeHandler(logging.StreamHandler):
    """Writes each line with ``tqdm.write``, which clears the progress bars drawn on the terminal
    (the Trainer's, an audit's), prints the line and redraws them; a plain write would land on
    the bar's line, after its carriage return."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)


def natural_rate_reason(evaluation) -> str | None:
    """Why the natural-rate estimate of ``evaluation`` (primary judge, all prompts) was withheld;
    None when it was given or not asked for (``natural_rate`` off)."""
    from .summary import NOT_SCORED

    for row in evaluation.rows():
        if row.judge == evaluation.primary_judge and row.category is None and row.natural.rate.value is None:
            return row.natural.reason if row.natural.reason != NOT_SCORED.reason else None
    return None


def _rate(k, n) -> str:
    return f"{int(k)}/{int(n)} ({k / n:.1%})" if n else f"{int(k)}/{int(n)}"


def evaluation_line(step: int, metrics: dict, natural_reason: str | None = None, discovery: str | None = None) -> str:
    """One evaluation's headline from its ``lda/...`` metrics (primary judge, all prompts; none
    without a judge), why the natural-rate estimate was withheld (:func:`natural_rate_reason`), and
    ``discovery``, the judge-free discovery's news (its top new phrase)."""
    m = metrics
    unscored = int(m.get("lda/unscored", 0) + m.get("lda/unscored_plain", 0))
    parts = [f"lda-monitor step {step}: alpha {m.get('lda/alpha', float('nan')):g}"]
    if "lda/n" in m or "lda/n_plain" in m:
        parts += [f"amplified {_rate(m.get('lda/flagged', 0), m.get('lda/n', 0))} flagged",
                  f"plain {_rate(m.get('lda/flagged_plain', 0), m.get('lda/n_plain', 0))}",
                  *_natural_part(m, natural_reason), f"unscored {unscored}"]
    if discovery:
        parts.append(discovery)
    parts.append(f"{m.get('lda/eval_seconds', 0.0):.1f} s")
    if m.get("lda/skipped_rollouts"):
        parts.append(f"{int(m['lda/skipped_rollouts'])} rollouts skipped (max_eval_seconds)")
    return " | ".join(parts)


def _natural_part(m: dict, reason: str | None) -> list[str]:
    """The natural-rate estimate with its interval, or "withheld" with its upper bound (if any)
    and the reason; nothing when the estimate is off."""
    if "lda/natural_rate" in m:
        # Which estimate was published: the candidate whose value it is (lda_monitor.core.estimate_choice).
        by = next((f" ({name})" for name, key in (("stratified", "lda/natural_rate_stratified"),
                                                  ("importance sampling", "lda/natural_rate_importance"))
                   if m.get(key) == m["lda/natural_rate"]), "")
        return [f"natural {m['lda/natural_rate']:.4f} [{m['lda/natural_rate_lo']:.4f}, "
                f"{m['lda/natural_rate_hi']:.4f}]{by}"]
    bound = f" (<= {m['lda/natural_rate_hi']:.4f})" if "lda/natural_rate_hi" in m else ""
    if reason or bound:
        return [f"natural withheld{bound}" + (f": {reason}" if reason else "")]
    return []


class EvaluationProgress:
    """Rollouts done / total per phase of one evaluation (amplified, plain, estimate), with the
    time elapsed and left, updated as each rollout finishes (one decode batch can run for
    minutes: a newcomer's first evaluation ran 27 minutes with nothing on the screen).

    On a terminal: one tqdm bar per phase. Otherwise (a CI or cluster log file, which would fill
    with carriage-return frames): a plain line through ``emit`` when a phase passes a quarter of
    its rollouts, or ``interval`` seconds after the last line, and when a phase completes. The
    evaluator calls :meth:`begin` with the totals once it knows them, :meth:`advance` as rollouts
    finish and :meth:`close` at the end.
    """

    QUARTER = 0.25

    def __init__(self, desc: str, *, stream=None, emit=None, enabled: bool = True, interval: float = 30.0,
                 clock=time.monotonic):
        self.desc, self.enabled, self.interval, self.clock = desc, enabled, interval, clock
        self.stream = stream if stream is not None else sys.stderr
        self.emit = emit if emit is not None else (lambda line: print(line, file=self.stream, flush=True))
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.bars: dict = {}
        self.start = self.last_line = clock()
        self.resumed = 0  # rollouts done before this session (a resumed audit unit): not in the rate

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def begin(self, totals: dict[str, int], done: dict[str, int] | None = None) -> None:
        """``totals``: rollouts per phase; ``done``: those already done (a resumed unit)."""
        self.totals = {phase: n for phase, n in totals.items() if n}
        self.done = {phase: (done or {}).get(phase, 0) for phase in self.totals}
        self.resumed = sum(self.done.values())
        self.start = self.last_line = self.clock()
        if not self.enabled or not self.tty:
            return
        from tqdm.auto import tqdm

        for phase, total in self.totals.items():  # tqdm stacks them under any bar already drawn (the Trainer's)
            self.bars[phase] = tqdm(total=total, initial=self.done[phase], desc=f"{self.desc} {phase}",
                                    unit="rollout", file=self.stream, leave=False)

    def add_phase(self, phase: str, total: int) -> None:
        """A phase whose size is known only after the others ran (discovery's confirmation round)."""
        if not total:
            return
        self.totals[phase], self.done[phase] = total, 0
        if self.enabled and self.tty:
            from tqdm.auto import tqdm

            self.bars[phase] = tqdm(total=total, desc=f"{self.desc} {phase}", unit="rollout", file=self.stream,
                                    leave=False)

    def advance(self, phase: str, n: int = 1) -> None:
        before = self.done[phase]
        self.done[phase] = before + n
        if not self.enabled:
            return
        if phase in self.bars:
            self.bars[phase].update(n)
            return
        total = self.totals[phase]
        quarter = int(before / total / self.QUARTER) != int(self.done[phase] / total / self.QUARTER)
        if quarter or self.clock() - self.last_line >= self.interval:
            self.emit(self.line(phase))
            self.last_line = self.clock()

    # Rows of a decode batch finish together near its end, so a rate from the first few finished
    # rollouts is no rate at all (one done in 39 s read as "~3867 s left"): no estimate before this share.
    MIN_SHARE_FOR_ESTIMATE = 0.1

    def remaining_seconds(self) -> float | None:
        """Seconds left for the whole evaluation at the rate so far (None before
        :attr:`MIN_SHARE_FOR_ESTIMATE` of its rollouts are done in this session)."""
        done = sum(self.done.values()) - self.resumed
        if done <= 0 or done < self.MIN_SHARE_FOR_ESTIMATE * (sum(self.totals.values()) - self.resumed):
            return None
        left = sum(self.totals.values()) - sum(self.done.values())
        return (self.clock() - self.start) * left / done

    def line(self, phase: str) -> str:
        done, total = self.done[phase], self.totals[phase]
        left = self.remaining_seconds()
        eta = f", ~{left:.0f} s left in the evaluation" if left is not None else ""
        return (f"{self.desc} {phase}: {done}/{total} rollouts ({done / total:.0%}), "
                f"{self.clock() - self.start:.0f} s elapsed{eta}")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars = {}


def _interval(arm) -> str:
    """An arm (a :class:`~lda_monitor.core.summary.FlagRate`) as ``k/n rate [lo, hi]``, or ``k/n -``."""
    return str(arm) if arm.n else f"{arm} -"


def summary_table(rows) -> str:
    """The audit's terminal table: one line per checkpoint x alpha x judge (all prompts)."""
    lines = [f"{'step':>6}  {'checkpoint':<18} {'alpha':>7}  {'judge':<12} {'amplified k/n rate [95% CI]':<30} "
             f"{'plain k/n rate [95% CI]':<30} {'unscored':>8}"]
    for r in rows:
        if r.category is not None:
            continue
        amp, plain = _interval(r.amplified), _interval(r.plain)
        name = Path(r.checkpoint).name if r.checkpoint else "-"
        lines.append(f"{r.step:>6}  {name:<18} {r.alpha:>7g}  {r.judge:<12} {amp:<30} {plain:<30} "
                     f"{r.amplified.unscored + r.plain.unscored:>8}")
    return "\n".join(lines)
