"""Metric names from the summary's declaration: a path to a logged value names the metric that
flat_metrics logs for it; a path to a column-only value is refused."""

from __future__ import annotations

import pytest

from lda_monitor.core.metric_names import summary_metric


def test_paths_name_the_metrics_the_readme_table_lists():
    assert summary_metric("plain", "rate", "lo") == "lda/flag_rate_plain_lo"
    assert summary_metric("amplified", "rate", "value") == "lda/flag_rate"
    assert summary_metric("natural", "rate", "hi") == "lda/natural_rate_hi"
    assert summary_metric("alpha") == "lda/alpha"


@pytest.mark.parametrize("path", [("step",), ("natural", "reason"), ("no_such_field",)])
def test_a_path_to_nothing_logged_is_refused(path):
    with pytest.raises(KeyError):
        summary_metric(*path)
