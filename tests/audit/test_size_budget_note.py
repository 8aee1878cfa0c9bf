"""A run whose monitor adapted its evaluations to a time budget (``max_monitor_fraction``) cannot be
reproduced by an audit of the configured measurement at the steps it cut: the audit says so,
from the state the callback saved in each checkpoint, instead of silently disagreeing."""

from __future__ import annotations

import json

from lda_monitor.audit.auditor import _size_budget_note
from lda_monitor.audit.checkpoints import Checkpoint


def _checkpoint(tmp_path, step, args):
    path = tmp_path / f"checkpoint-{step}"
    path.mkdir()
    state = {"stateful_callbacks": {"LDAMonitorCallback": {"args": args, "attributes": {"monitor_state": {}}}}}
    (path / "trainer_state.json").write_text(json.dumps(state))
    return Checkpoint(path=path, step=step, kind="adapter")


def test_a_budgeted_run_is_named_with_its_fraction(tmp_path):
    note = _size_budget_note([_checkpoint(tmp_path, 2, {"max_monitor_fraction": 0.2})])
    assert "max_monitor_fraction=0.2" in note and "differ from its records" in note


def test_an_unbudgeted_run_gets_no_note(tmp_path):
    assert _size_budget_note([_checkpoint(tmp_path, 2, {"max_monitor_fraction": None}),
                              _checkpoint(tmp_path, 4, {})]) is None
