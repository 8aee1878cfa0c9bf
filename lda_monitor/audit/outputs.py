"""What an offline run leaves in its output directory, from its records alone: ``summary.json``,
``summary.csv``, the plots and ``report.html``. The audit and ``rejudge`` both end here, so a
re-judged run reads exactly like an audited one."""

from __future__ import annotations

import csv
import json
from pathlib import Path

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
    from .report import write_report

    rows = summarize(records)
    write_summary(out, rows)
    write_report(out, rows, records, run_info=run_info, primary_judge=primary_judge)
    return rows
