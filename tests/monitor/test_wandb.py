"""W&B: an offline run's scalars, table and config, read back from the run file itself."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

from lda_monitor.core.records import RECORDS_FILE, read_records
from tests.training import PLANTED, make_monitor, monitor_rows, train
from tests.wandb_runs import history_rows, read_run

wandb = pytest.importorskip("wandb")


def test_offline_run_holds_scalars_table_and_config(policy, tokenizer, dataset, offline_wandb, monkeypatch):
    tmp_path = offline_wandb
    monkeypatch.setenv("WANDB_PROJECT", "lda-monitor-tests")
    try:
        trainer = train(policy, tokenizer, dataset, tmp_path / "out", [make_monitor(table_unflagged_samples=3)],
                        report_to="wandb")
    finally:
        wandb.finish()
    records = read_run(tmp_path)
    rows = history_rows(records)
    expected = monitor_rows(trainer.state.log_history)

    # Scalars: every lda metric of each evaluation, on the training step axis, exactly once.
    logged = [r for r in rows if "lda/alpha" in r]
    assert [r["train/global_step"] for r in logged] == [row["step"] for row in expected] == [0, 3, 6]
    for got, want in zip(logged, expected, strict=True):
        assert {k: got[k] for k in want if k != "step"} == {k: v for k, v in want.items() if k != "step"}
    assert not any(k.startswith("train/lda/") for r in rows for k in r), "not duplicated by the WandbCallback"
    assert [r["train/global_step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4, 5, 6]

    metrics = [r.metric for r in records if r.WhichOneof("record_type") == "metric"]
    assert any(m.glob_name == "lda/*" and m.step_metric == "train/global_step" for m in metrics)
    config = {item.key: json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for item in r.config.update}
    assert config["lda_monitor"]["reference"]["kind"] == "weight-snapshot"
    assert config["lda_monitor"]["every_n_steps"] == 3
    # The judge as measured (its pattern), not its name alone.
    assert config["lda_monitor"]["judge"] == {"type": "RegexJudge", "name": "regex", "patterns": [PLANTED]}

    # Tables: all flagged rollouts of the step plus 3 unflagged ones, with the judge's verdicts.
    jsonl = list(read_records(tmp_path / "out" / "lda_monitor" / RECORDS_FILE))
    run_dir = Path(glob.glob(str(tmp_path / "wandb" / "offline-run-*"))[0])
    for got in logged:
        table = json.loads((run_dir / "files" / got["lda/rollouts/path"]).read_text())
        step = got["train/global_step"]
        assert table["columns"][:3] == ["step", "kind", "alpha"] and "regex/flagged" in table["columns"]
        flag = table["columns"].index("regex/flagged")
        mine = [r for r in jsonl if r.step == step]
        n_flagged = sum(PLANTED in r.completion for r in mine)
        assert len(table["data"]) == n_flagged + min(3, len(mine) - n_flagged)
        assert sum(bool(row[flag]) for row in table["data"]) == n_flagged
        assert all(row[0] == step for row in table["data"])

    # Rollout history: one incremental table, whose increments together hold every evaluation's rows.
    tables = [{k.removeprefix("lda/rollouts/"): v for k, v in got.items() if k.startswith("lda/rollouts/")}
              for got in logged]
    assert all(t["_type"] == "incremental-table-file" for t in tables)
    assert [t["increment_num"] for t in tables] == [0, 1, 2]
    history = [row for t in tables for row in json.loads((run_dir / "files" / t["path"]).read_text())["data"]]
    assert sorted({row[0] for row in history}) == [0, 3, 6]
    assert len(tables[-1]["previous_increments_paths"]) == 2, "the last increment points back at both others"

    # Step 0 (policy = reference) flags nothing: the natural-rate estimate is withheld, and why is in a table.
    (first,) = [r for r in logged if r["train/global_step"] == 0]
    withheld = json.loads((run_dir / "files" / first["lda/natural_rate_withheld/path"]).read_text())
    assert withheld["columns"] == ["step", "alpha", "judge", "category", "upper_bound", "reason"]
    assert any(row[2] == "regex" and row[3] == "all" and row[5].startswith("0 flagged rollouts in the pool")
               for row in withheld["data"])
    # Discovery: one table per evaluation, one row per phrase of that step's discovery.
    from lda_monitor.core.discovery import discover_records
    from lda_monitor.sinks.wandb_sink import DISCOVERY_COLUMNS

    found = {d.step: d for d in discover_records(jsonl)}
    for got in logged:
        table = json.loads((run_dir / "files" / got["lda/discoveries/path"]).read_text())
        step = got["train/global_step"]
        assert table["columns"] == DISCOVERY_COLUMNS
        assert [(row[0], row[2], row[3], row[4], row[6]) for row in table["data"]] == [
            (step, p.text, p.direction, p.amplified_count, p.plain_count) for p in found[step].phrases]
