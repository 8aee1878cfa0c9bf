"""The names of the ``lda/...`` scalars, declared once.

The summary's metrics are named by :class:`~lda_monitor.core.summary.SummaryRow`'s fields
(:func:`summary_metric` looks one up by its attribute path); the evaluation's costs and what only
the callback knows are named here. The evaluation, the callback and the W&B workspace
(:mod:`lda_monitor.sinks.wandb_workspace`) all import these names, so a panel cannot point at a
metric nobody logs: renaming one renames it everywhere.
"""

from __future__ import annotations

PREFIX = "lda"

# The evaluation's cost (lda_monitor.core.evaluation.Evaluation.metrics).
EVAL_SECONDS = f"{PREFIX}/eval_seconds"
# The evaluation's size where max_monitor_fraction adapts it (lda_monitor.monitor.cost).
EVAL_PROMPTS = f"{PREFIX}/eval_prompts"
EVAL_SAMPLES_PER_PROMPT = f"{PREFIX}/eval_samples_per_prompt"
EVAL_MAX_NEW_TOKENS = f"{PREFIX}/eval_max_new_tokens"
TOKENS_PER_SECOND = f"{PREFIX}/tokens_per_second"
SKIPPED_ROLLOUTS = f"{PREFIX}/skipped_rollouts"
# Judge-free discovery (the callback).
DISCOVERY_SECONDS = f"{PREFIX}/discovery_seconds"
DISCOVERED_OVER = f"{PREFIX}/discovered_over"
DISCOVERED_UNDER = f"{PREFIX}/discovered_under"
DISCOVERED_LENGTH = f"{PREFIX}/discovered_length"  # -1 amplified answers shorter, +1 longer, 0 neither
# The run (the callback).
MONITOR_TIME_SHARE = f"{PREFIX}/monitor_time_share"
ERRORS = f"{PREFIX}/errors"
ALERT = f"{PREFIX}/alert"


def summary_metric(*path: str) -> str:
    """The ``lda/`` name of the :class:`~lda_monitor.core.summary.SummaryRow` value at ``path``
    (e.g. ``("plain", "rate", "lo")`` -> ``lda/flag_rate_plain_lo``); a path that names no logged
    value is a programming error, raised at once."""
    from .summary import flat_fields

    for flat in flat_fields():
        if flat.path == path and flat.metric:
            return f"{PREFIX}/{flat.name}"
    raise KeyError(f"no logged SummaryRow value at {path!r}")
