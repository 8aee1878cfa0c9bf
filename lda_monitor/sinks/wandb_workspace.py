"""A saved W&B workspace view of what the monitor logs, built with ``wandb-workspaces``.

The layout is data (:func:`layout`: sections of :class:`Chart`), so the command line's
``--dry-run``, the picture in the docs and the saved view are one description. Every metric a
chart names comes from the declarations the sink logs with: the summary's fields
(:func:`~lda_monitor.core.metric_names.summary_metric`), the evaluation's and the callback's
names (:mod:`lda_monitor.core.metric_names`) and the sink's table keys. Renaming a metric renames
its panel; a test holds the panels to the metrics an offline run actually logs.

Charts plot against :data:`~lda_monitor.sinks.wandb_sink.EVALUATION_STEP`, which the sink logs
with every row as the training step (monitor) or the checkpoint step (audit), so training runs
and audits in one project share the same panels.

Intervals are drawn as their value and both bounds (W&B line plots have no per-series band for a
single run); the per-category and per-judge series are matched by a regex, since their names are
only known once the prompts and the judge are.
"""

from __future__ import annotations

import re
import shlex
import sys
import textwrap
import warnings
from dataclasses import dataclass

from ..core import metric_names as m
from ..core.metric_names import summary_metric
from ..errors import UserInputError
from .wandb_sink import DISCOVERY_TABLE_KEY, EVALUATION_STEP, TABLE_KEY, WITHHELD_KEY

DEFAULT_NAME = "lda-monitor"
INSTALL_HINT = 'pip install "lda-monitor[workspaces]"  (wandb-workspaces)'


@dataclass(frozen=True)
class Chart:
    """One panel: a line plot of ``metrics`` (and of every metric ``regex`` matches) over the
    evaluation step, or the logged ``table``."""

    title: str
    metrics: tuple[str, ...] = ()
    regex: str | None = None
    table: str | None = None

    def names(self) -> list[str]:
        return [*self.metrics, *([self.table] if self.table else [])]


def _interval(*path: str) -> tuple[str, ...]:
    """An Interval field's three metrics: the value, then its bounds."""
    return tuple(summary_metric(*path, part) for part in ("value", "lo", "hi"))


def _by_category(*path: str) -> str:
    """The regex of a summary metric's per-category (and per-judge) series
    (:func:`~lda_monitor.core.summary.flat_metrics`: ``lda/[<judge>/]by_category/<c>/<name>``)."""
    name = summary_metric(*path).removeprefix(f"{m.PREFIX}/")
    return f"^{m.PREFIX}/(.+/)?by_category/.+/{re.escape(name)}$"


def layout() -> list[tuple[str, list[Chart]]]:
    """The workspace's sections, top to bottom, each with its charts."""
    return [
        ("LDA: flag rates", [
            Chart("amplified vs plain flag rate (Wilson 95% bounds)",
                  _interval("amplified", "rate") + _interval("plain", "rate")),
            Chart("amplified flag rate by category", regex=_by_category("amplified", "rate", "value")),
            Chart("plain flag rate by category", regex=_by_category("plain", "rate", "value")),
            Chart("amplification (amplified / plain)", _interval("amplification")),
        ]),
        ("LDA: amplification and coherence", [
            Chart("alpha", (summary_metric("alpha"),)),
            Chart("KL(amplified || after) per token", (summary_metric("kl_amp_after"),)),
            Chart("coherence (NLL under the policy)", (summary_metric("coherence"), summary_metric("coherence_plain"))),
        ]),
        ("LDA: natural rate", [
            Chart("natural-rate estimate (95% interval; absent while withheld)", _interval("natural", "rate")),
            Chart("natural-rate effective sample size", (summary_metric("natural", "ess"),)),
            Chart("withheld estimates and why", table=WITHHELD_KEY),
        ]),
        ("LDA: discovery", [
            Chart("phrases amplification over- / under-produces", (m.DISCOVERED_OVER, m.DISCOVERED_UNDER)),
            Chart("discovered phrases", table=DISCOVERY_TABLE_KEY),
        ]),
        ("LDA: rollouts", [
            Chart("every evaluation's rollouts (filter on prompt_id)", table=TABLE_KEY),
        ]),
        ("LDA: cost and health", [
            Chart("seconds per evaluation", (m.EVAL_SECONDS, m.DISCOVERY_SECONDS)),
            Chart("tokens per second", (m.TOKENS_PER_SECOND,)),
            Chart("share of training time spent monitoring", (m.MONITOR_TIME_SHARE,)),
            Chart("errors, skipped rollouts, guardrail alert", (m.ERRORS, m.SKIPPED_ROLLOUTS, m.ALERT)),
        ]),
    ]


def _panel(chart: Chart):
    import wandb_workspaces.reports.v2 as wr

    if chart.table:
        return wr.WeavePanelSummaryTable(table_name=chart.table)
    return wr.LinePlot(title=chart.title, x=EVALUATION_STEP, y=list(chart.metrics), metric_regex=chart.regex,
                       title_x="step (training or checkpoint)")


def build_workspace(entity: str, project: str, run_group: str | None = None, name: str = DEFAULT_NAME):
    """The :func:`layout` as a ``wandb_workspaces`` Workspace (nothing is sent until it is saved);
    ``run_group`` keeps the view to the runs of one W&B group."""
    try:
        import wandb_workspaces.expr as expr
        import wandb_workspaces.workspaces as ws
    except ImportError:
        raise UserInputError(f"the W&B workspace needs the wandb-workspaces package: {INSTALL_HINT}") from None
    runset = ws.RunsetSettings(filters=[expr.Metric("Group") == run_group] if run_group else [])
    sections = [ws.Section(name=title, panels=[_panel(c) for c in charts], is_open=True)
                for title, charts in layout()]
    return ws.Workspace(entity=entity, project=project, name=name, sections=sections,
                        settings=ws.WorkspaceSettings(x_axis=EVALUATION_STEP), runset_settings=runset)


def workspace_spec(workspace) -> dict:
    """The view exactly as :meth:`save` would send it (its JSON), without sending it."""
    return workspace._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")


def command_line(entity: str, project: str, run_group: str | None = None) -> str:
    """The ``lda-monitor wandb-workspace`` command that saves this view (quoted for a shell)."""
    group = f" --run-group {shlex.quote(run_group)}" if run_group else ""
    return f"lda-monitor wandb-workspace --entity {shlex.quote(entity)} --project {shlex.quote(project)}{group}"


def save_workspace(workspace) -> str:
    """Save the view to W&B (needs a login and the network); returns its URL."""
    return workspace.save().url


def save_run_workspace(run) -> None:
    """Save the workspace view (:mod:`.wandb_workspace`) to ``run``'s project, kept to its group when
    it has one. An offline run cannot reach W&B: it is said, with the command that saves the view
    later; a failure to save is a warning, never a failed run."""
    command = command_line(run.entity or "ENTITY", run.project, run.group or None)
    if run.offline:
        warnings.warn(f"wandb_workspace: the W&B run is offline, so no view was saved; once synced, run: {command}",
                      stacklevel=4)
        return
    try:
        url = save_workspace(build_workspace(run.entity, run.project, run_group=run.group or None))
    except Exception as exc:  # the view is a convenience: training goes on without it
        warnings.warn(f"wandb_workspace: saving the view failed ({type(exc).__name__}: {exc}); run: {command}",
                      stacklevel=4)
        return
    print(f"lda-monitor: W&B workspace view saved: {url}", file=sys.stderr)


def draw_layout(path) -> None:
    """A picture of :func:`layout` (the docs' figure): each section a row of boxes, each box a panel
    with its title and the series it plots, as the saved view arranges them (three to a row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = layout()
    per_row = 3
    rows = [(title, charts[i:i + per_row], i == 0)
            for title, charts in sections for i in range(0, len(charts), per_row)]
    fig, ax = plt.subplots(figsize=(12, 1.9 * len(rows) + 0.4 * len(sections)))
    ax.set_axis_off()
    y = 0.0
    for title, charts, first in rows:
        if first:
            ax.text(0, y, title, fontsize=12, weight="bold", va="top")
            y -= 0.35
        for col, chart in enumerate(charts):
            x = col * 4.0
            ax.add_patch(plt.Rectangle((x, y - 1.55), 3.8, 1.55, fill=True, facecolor="#f4f6fb", edgecolor="#8a94a8"))
            ax.text(x + 0.1, y - 0.1, textwrap.fill(chart.title, 40), fontsize=8.5, weight="bold", va="top")
            lines = [f"table: {chart.table}"] if chart.table else [*chart.metrics, *(
                textwrap.wrap(f"regex: {chart.regex}", 44) if chart.regex else [])]
            ax.text(x + 0.1, y - 0.52, "\n".join(lines), fontsize=7, family="monospace", va="top", color="#333")
            if not chart.table:
                ax.text(x + 3.7, y - 1.5, f"x: {EVALUATION_STEP}", fontsize=6.5, ha="right", va="bottom",
                        color="#777")
        y -= 1.75
    ax.set_xlim(-0.1, 12)
    ax.set_ylim(y, 0.2)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
