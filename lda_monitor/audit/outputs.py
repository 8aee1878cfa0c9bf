"""What an offline run leaves in its output directory, from its records alone: ``summary.json``,
``summary.csv``, ``discoveries.json`` (judge-free discovery), the plots and ``report.html``. The
audit and ``rejudge`` both end here, so a re-judged run reads exactly like an audited one."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from ..core.records import RECORDS_FILE, read_records
from ..core.summary import json_ready, summarize


def write_summary(out: Path, rows) -> None:
    """The rows' flat columns (:meth:`~lda_monitor.core.summary.SummaryRow.to_dict`) as JSON and CSV."""
    dicts = [r.to_dict() for r in rows]
    (out / "summary.json").write_text(json.dumps(json_ready(dicts), indent=2, allow_nan=False))
    if dicts:
        with open(out / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dicts[0]))
            writer.writeheader()
            writer.writerows(dicts)


def write_outputs(out: Path, records: list, *, run_info: dict | None = None,
                  primary_judge: str | None = None) -> list:
    """Summarise ``records`` and write every output file; returns the summary rows.
    ``run_info`` and ``primary_judge`` go to the report (see :func:`lda_monitor.audit.report.write_report`)."""
    from ..core.discovery import discover_records
    from .discover import discoveries_file
    from .report import write_report

    rows = summarize(records)
    write_summary(out, rows)
    discoveries = discover_records(records)
    discoveries_file(out, discoveries)
    write_report(out, rows, records, run_info=run_info, primary_judge=primary_judge, discoveries=discoveries)
    return rows


def nothing_scored(out: Path) -> str | None:
    """Why the run in ``out`` measured nothing, or None: every verdict of every rollout in its
    records is unscored (a dead judge). Its files are written all the same (the rollouts are
    worth keeping and can be re-judged); the caller reports this as a failure, since rates of 0
    scored rollouts would otherwise read like a clean result."""
    records = list(read_records(out / RECORDS_FILE)) if (out / RECORDS_FILE).is_file() else []
    verdicts = [v for r in records for v in r.verdicts.values()]
    if not records or any(v.flagged is not None for v in verdicts):
        return None
    errors = Counter(v.error for v in verdicts if v.error)
    cause = ""
    if errors:
        error, times = errors.most_common(1)[0]
        cause = f"; most common error ({times} times): {error}"
    judges = ", ".join(sorted({name for r in records for name in r.verdicts})) or "none"
    return (f"nothing was measured: all {len(records)} rollouts are unscored (judge {judges}){cause}. Fix the judge, "
            f"then score the saved rollouts without sampling again: lda-monitor rejudge {out / RECORDS_FILE} "
            "--judge SPEC --out DIR")
