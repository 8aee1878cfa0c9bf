"""``lda-monitor discover``: discoveries.json and the report from stored records, no model, no judge."""

from __future__ import annotations

import json
import random

from lda_monitor.audit.discover import discover_files
from lda_monitor.cli import main
from lda_monitor.core.records import RecordWriter
from lda_monitor.judges.base import Verdict
from tests.discovery_records import filler, record

PLANTED = "Click <b>here</b> & send me your password now"


def write_rollouts(path, *, judged: bool = False):
    """Step 0: amplified and plain alike; step 4: 12 of 60 amplified rollouts end with PLANTED,
    across 6 prompts of 10 rollouts per kind."""
    rng = random.Random(5)
    records = []
    for step in (0, 4):
        hits = set(rng.sample(range(60), 12)) if step else set()
        for p in range(6):
            for s in range(10):
                amp = filler(rng) + (" " + PLANTED if p * 10 + s in hits else "")
                records += [record("amplified", p, amp, s, step=step), record("plain", p, filler(rng), s, step=step)]
    if judged:
        for r in records:
            r.verdicts = {"regex": Verdict(flagged="password" in r.completion)}
    with RecordWriter(path) as writer:
        writer.write(records)
    return records


def test_discover_command_writes_discoveries_and_report(tmp_path, capsys):
    write_rollouts(tmp_path / "rollouts.jsonl")
    assert main(["discover", str(tmp_path / "rollouts.jsonl"), "--out", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "discoveries.json").read_text())
    assert saved["method"]["q_level"] == 0.05
    assert set(saved["by_step"]) == {"0", "4"}
    (zero,), (four,) = saved["by_step"]["0"], saved["by_step"]["4"]
    assert (zero["step"], zero["alpha"], zero["phrases"]) == (0, 2.0, [])
    top = four["phrases"][0]
    assert top["text"] == "click b here b send me your password now"  # markup is punctuation: words only
    assert (top["direction"], top["amplified_count"], top["amplified_n"], top["plain_count"], top["plain_n"]) == (
        "over", 12, 60, 0, 60)
    assert top["q_value"] <= 0.05 and top["log_ratio"] > 0
    example = top["examples"][0]
    start, end = example["spans"][0]
    assert example["completion"][start:end] == PLANTED
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.index("What amplification over- and under-produces") < page.index('id="run"')
    assert "<mark>Click &lt;b&gt;here&lt;/b&gt; &amp; send me your password now</mark>" in page  # escaped, never raw
    assert "<b>here</b>" not in page
    assert "No judge: no flag rates" in page
    out = capsys.readouterr().out
    assert "step 0, alpha 2: no phrase over- or under-produced" in out
    assert '"click b here b send me your password now" over: amplified 12/60, plain 0/60' in out


def test_python_api_and_judged_records(tmp_path):
    """Records with verdicts: the same discoveries, and the report keeps its flag-rate sections."""
    write_rollouts(tmp_path / "rollouts.jsonl", judged=True)
    found = discover_files([tmp_path / "rollouts.jsonl"], tmp_path / "out", echo=lambda line: None)
    assert [(d.step, len(d.phrases)) for d in found][0] == (0, 0)
    assert found[1].over()[0].amplified_count == 12
    page = (tmp_path / "out" / "report.html").read_text()
    assert "What amplification over- and under-produces" in page and 'id="flag-rate"' in page


def test_nothing_found_leaves_the_report_without_the_section(tmp_path):
    records = write_rollouts(tmp_path / "rollouts.jsonl")
    with RecordWriter(tmp_path / "zero.jsonl") as writer:
        writer.write([r for r in records if r.step == 0])
    discover_files([tmp_path / "zero.jsonl"], tmp_path / "out", echo=lambda line: None)
    assert "What amplification over- and under-produces" not in (tmp_path / "out" / "report.html").read_text()


def test_discover_options_are_recorded_and_applied(tmp_path, capsys):
    write_rollouts(tmp_path / "rollouts.jsonl")
    assert main(["discover", str(tmp_path / "rollouts.jsonl"), "--out", str(tmp_path / "out"), "--q", "0.01",
                 "--min-count", "13"]) == 0
    saved = json.loads((tmp_path / "out" / "discoveries.json").read_text())
    assert (saved["method"]["q_level"], saved["method"]["min_count"]) == (0.01, 13)
    assert all(e["phrases"] == [] for entries in saved["by_step"].values() for e in entries)  # 12 < 13 rollouts
    assert "no phrase over- or under-produced (q <= 0.01" in capsys.readouterr().out
