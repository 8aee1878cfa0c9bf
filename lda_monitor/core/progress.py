"""What a person watching a terminal or a log file sees while lda-monitor works.

* :func:`evaluation_line`: the callback's one line per evaluation (step, alpha, amplified and
  plain counts and rates, the natural-rate estimate or why it was withheld, unscored, the top
  new phrase discovery found, seconds), logged through :func:`progress_logger`; the Trainer's own
  rows are 25-key dicts nobody reads while training, and hold numbers only (no reason).
* :class:`RolloutProgress`: rollouts done / total within one audit unit, on stderr: a tqdm bar
  on a terminal, one plain line per chunk otherwise (a training job's log file would fill with
  carriage-return frames).
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


class RolloutProgress:
    """Rollouts done out of ``total`` for one audit unit (checkpoint x alpha)."""

    def __init__(self, total: int, desc: str, *, done: int = 0, stream=None, enabled: bool = True):
        self.total, self.desc, self.done = total, desc, done
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.start = time.perf_counter()
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc=desc, unit="rollout", file=self.stream, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
        else:
            share = self.done / self.total if self.total else 1.0
            print(f"{self.desc}: {self.done}/{self.total} rollouts ({share:.0%}), "
                  f"{time.perf_counter() - self.start:.1f} s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
