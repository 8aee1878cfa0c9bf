"""``lda-monitor discover``: what amplification over- and under-produces, from stored records.

Like ``rejudge`` it loads no model and needs no judge: the inputs are rollout records (the
callback's or the audit's), the output directory gets ``discoveries.json`` (one entry list per
step, see :func:`discoveries_file`) and ``report.html`` with the discoveries at the top
(and the flag rates, when the records carry verdicts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..core.discovery import (
    Discovery,
    discover_records,
    discoveries_json,
    discovery_lines,
    method_json,
)
from ..core.records import read_record_files
from ..core.summary import json_ready

DISCOVERIES_FILE = "discoveries.json"


def discoveries_file(out: str | Path, discoveries: Sequence[Discovery], **method) -> Path:
    """Write ``out/discoveries.json``: ``{"method": ..., "by_step": {"<step>": [entry, ...]}}``, one
    entry per evaluation at that step (several alphas of a sweep give several), each shaped like
    an entry of ``summary.json``'s ``discoveries`` but with every phrase kept. ``method``: the
    options of :func:`~lda_monitor.core.discovery.method_json` the phrases were found with."""
    by_step: dict[str, list] = {}
    for entry in discoveries_json(discoveries, top=None):
        by_step.setdefault(str(entry["step"]), []).append(entry)
    path = Path(out) / DISCOVERIES_FILE
    path.write_text(json.dumps(json_ready({"method": method_json(**method), "by_step": by_step}), indent=2,
                               allow_nan=False, ensure_ascii=False))
    return path


def discover_files(paths, out, *, echo=print, **options) -> list[Discovery]:
    """Discover over the records of ``paths`` into ``out``; returns one Discovery per evaluation.
    ``options`` go to :func:`lda_monitor.core.discovery.discover` (q_level, min_count, ...)."""
    from ..core.summary import summarize
    from .report import write_report

    records = read_record_files(paths)
    found = discover_records(records, **options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    discoveries_file(out, found, **options)
    write_report(out, summarize(records), records, discoveries=found, run_info={
        "command": "lda-monitor discover", "inputs": [str(p) for p in paths], "records": len(records)})
    if not found:
        echo("no evaluation has both amplified and plain rollouts: nothing to compare")
    for line in discovery_lines(found):
        echo(line)
    return found
