"""The W&B workspace's dry run names what the callback logs: every metric a panel plots, every
per-category regex and every table, checked against the history of an offline run of a tiny model
(read back from the run file). A metric renamed on one side only fails here."""

from __future__ import annotations

import json
import re

import pytest

from lda_monitor.cli import main
from lda_monitor.sinks.wandb_sink import EVALUATION_STEP
from tests.training import make_monitor, train
from tests.wandb_runs import history_rows, read_run

wandb = pytest.importorskip("wandb")
pytest.importorskip("wandb_workspaces", reason="the workspace needs the 'workspaces' extra (wandb-workspaces)")


def _dry_run(capsys, *args) -> dict:
    capsys.readouterr()  # what ran before (a training run's log lines) is not the view
    assert main(["wandb-workspace", "--entity", "someone", "--project", "lda-tests", "--dry-run", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _panels(view: dict) -> list[dict]:
    """Every panel of the view's spec, whatever section holds it."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "viewType" in node and "config" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(view)
    return found


def _named(panel: dict) -> tuple[list[str], str | None, str | None]:
    """(metrics, metric regex, table name) of one panel, from the spec's own keys."""
    config = panel["config"]
    if panel["viewType"] == "Run History Line Plot":
        return config.get("metrics", []), config.get("metricRegex"), None
    # A table panel is a Weave expression: runs.summary, then pick(key) with the table's key as a constant.
    table = re.search(r'"key": \{"nodeType": "const", "type": "string", "val": "([^"]+)"\}', json.dumps(config))
    return [], None, table.group(1) if table else None


def test_every_panel_names_what_an_offline_run_logged(policy, tokenizer, dataset, offline_wandb, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_PROJECT", "lda-monitor-tests")
    # A guardrail that only alerts (lda/alert is logged) and categories (the per-category series).
    monitor = make_monitor(stop_on_flag_rate_lower_bound=0.99, guardrail_action="alert")
    try:
        train(policy, tokenizer, dataset, offline_wandb / "out", [monitor], report_to="wandb")
    finally:
        wandb.finish()
    rows = history_rows(read_run(offline_wandb))
    logged = {key for row in rows for key in row}
    tables = {key.removesuffix("/_type") for key in logged if key.endswith("/_type")}
    view = _dry_run(capsys)

    panels = _panels(view)
    assert len(panels) >= 15
    plotted, regexes, shown = set(), [], set()
    for panel in panels:
        metrics, regex, table = _named(panel)
        assert metrics or regex or table, f"a panel naming nothing: {panel}"
        if panel["viewType"] == "Run History Line Plot":
            assert panel["config"]["xAxis"] == EVALUATION_STEP
        plotted |= set(metrics)
        regexes += [regex] if regex else []
        shown |= {table} if table else set()
    assert plotted - logged == set(), "panels plot metrics the callback never logged"
    for regex in regexes:
        assert any(re.search(regex, key) for key in logged), f"{regex} matches no logged metric"
    assert shown <= tables and {"lda/rollouts", "lda/discoveries", "lda/natural_rate_withheld"} <= shown
    # The headline numbers are all there: amplified and plain rates with bounds, the estimate, cost.
    assert {"lda/flag_rate", "lda/flag_rate_lo", "lda/flag_rate_hi", "lda/flag_rate_plain_hi", "lda/natural_rate",
            "lda/natural_rate_hi", "lda/alpha", "lda/kl_amp_after", "lda/eval_seconds"} <= plotted
    assert all(EVALUATION_STEP in row for row in rows if "lda/alpha" in row)


def test_a_run_group_filters_the_view(capsys):
    grouped = json.dumps(_dry_run(capsys, "--run-group", "sweep-7"))
    assert "sweep-7" in grouped and "sweep-7" not in json.dumps(_dry_run(capsys))


class OnlineRun:
    """What the opt-in reads of a run: where it logs, and that it is online."""

    entity, project, group, offline = "someone", "lda-tests", "sweep-7", False


def test_the_opt_in_saves_the_view_to_the_runs_project_and_group(monkeypatch):
    from lda_monitor.sinks import wandb_workspace

    saved = []
    monkeypatch.setattr(wandb_workspace, "save_workspace", lambda ws: saved.append(ws) or "https://view")
    wandb_workspace.save_run_workspace(OnlineRun())
    (view,) = saved
    assert (view.entity, view.project) == ("someone", "lda-tests") and "sweep-7" in json.dumps(
        wandb_workspace.workspace_spec(view))


def test_the_opt_in_on_an_offline_run_says_which_command_saves_the_view(policy, tokenizer, dataset, offline_wandb,
                                                                        monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "lda-monitor-tests")
    with pytest.warns(UserWarning, match="offline.*wandb-workspace --entity .* --project lda-monitor-tests"):
        try:
            train(policy, tokenizer, dataset, offline_wandb / "out", [make_monitor(wandb_workspace=True)],
                  report_to="wandb", max_steps=1)
        finally:
            wandb.finish()
