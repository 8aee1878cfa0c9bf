"""The summary row as typed data: its flat names are the published ones, its metrics are the
documented ones (the docs page's metric table is generated from them: tests/test_docs.py)."""

from __future__ import annotations

import json
import math

from lda_monitor.core.stats import Interval
from lda_monitor.core.summary import (
    Candidate,
    Extrapolation,
    FlagRate,
    NaturalEstimate,
    SummaryRow,
    flat_fields,
    flat_metrics,
    json_ready,
)

# summary.json's and summary.csv's columns as readers know them (the 0.1 format), in order.
PUBLISHED_COLUMNS = [
    "step", "checkpoint", "alpha", "judge", "category", "n", "flagged", "unscored", "flag_rate", "flag_rate_lo",
    "flag_rate_hi", "n_plain", "flagged_plain", "unscored_plain", "flag_rate_plain", "flag_rate_plain_lo",
    "flag_rate_plain_hi", "amplification", "amplification_lo", "amplification_hi", "coherence", "coherence_plain",
    "kl_amp_after", "natural_rate", "natural_rate_lo", "natural_rate_hi", "natural_rate_ess", "natural_rate_method",
    "natural_rate_reason", "natural_rate_mass", "natural_rate_raw_weights", "natural_rate_weights",
    "natural_rate_decision_token", "natural_rate_flagged_ess", "natural_rate_flagged_ess_whole",
    "natural_rate_stratified", "natural_rate_stratified_lo", "natural_rate_stratified_hi",
    "natural_rate_stratified_reason", "natural_rate_importance", "natural_rate_importance_lo",
    "natural_rate_importance_hi", "natural_rate_importance_reason", "natural_rate_extrapolated",
    "natural_rate_extrapolated_lo", "natural_rate_extrapolated_hi", "natural_rate_extrapolated_reason", "tokens",
]


def _row(judge="j", category=None, plain_lo=0.0) -> SummaryRow:
    return SummaryRow(
        step=3, checkpoint="ckpt", alpha=2.0, judge=judge, category=category,
        amplified=FlagRate(n=10, flagged=4, unscored=1, rate=Interval(0.4, 0.17, 0.69)),
        plain=FlagRate(n=8, flagged=0, unscored=2, rate=Interval(0.0, plain_lo, 0.32)),
        amplification=Interval(None, 0.53, math.inf if plain_lo == 0 else 0.69 / plain_lo),
        coherence=1.5, coherence_plain=1.25, kl_amp_after=0.75,
        natural=NaturalEstimate(rate=Interval(None, None, 0.31), ess=None, method="upper-bound",
                                reason="too few flagged", mass=0.9, raw_weights="0:1 2:0.001"),
        stratified=Candidate(rate=Interval(0.02, 0.01, 0.05), reason=None),
        importance=Candidate.of(None),
        extrapolated=Extrapolation(rate=Interval(None, None, None), reason="superseded"),
        tokens=120,
    )


def test_flat_columns_are_the_published_format():
    assert [f.name for f in flat_fields()] == PUBLISHED_COLUMNS
    data = _row().to_dict()
    assert list(data) == PUBLISHED_COLUMNS
    assert (data["n"], data["flagged"], data["unscored"], data["flag_rate"], data["flag_rate_lo"]) == \
           (10, 4, 1, 0.4, 0.17)
    assert (data["n_plain"], data["unscored_plain"], data["flag_rate_plain_hi"]) == (8, 2, 0.32)
    assert (data["amplification"], data["amplification_lo"], data["amplification_hi"]) == (None, 0.53, math.inf)
    assert (data["natural_rate"], data["natural_rate_hi"], data["natural_rate_method"]) == (None, 0.31, "upper-bound")
    assert (data["natural_rate_raw_weights"], data["natural_rate_extrapolated_reason"]) == ("0:1 2:0.001", "superseded")
    assert json.loads(json.dumps(json_ready(data)))["amplification_hi"] == "inf"


def test_metrics_follow_the_declaration():
    rows = [_row(), _row(judge="member"), _row(category="c", plain_lo=0.01)]
    metrics = flat_metrics(rows, primary_judge="j")
    assert metrics["lda/flag_rate"] == 0.4 and metrics["lda/n_plain"] == 8 and metrics["lda/unscored_plain"] == 2
    assert metrics["lda/member/flagged"] == 4 and metrics["lda/by_category/c/amplification_hi"] == 69.0
    # Headline metrics once, from the primary judge over all prompts.
    assert (metrics["lda/alpha"], metrics["lda/coherence"], metrics["lda/kl_amp_after"]) == (2.0, 1.5, 0.75)
    assert not any(k.startswith("lda/member/") and k.endswith(("alpha", "coherence")) for k in metrics)
    # Undefined, unbounded and textual values are left out.
    assert "lda/amplification" not in metrics and "lda/amplification_hi" not in metrics
    assert "lda/natural_rate" not in metrics and metrics["lda/natural_rate_hi"] == 0.31
    # Each candidate estimate has its own metric names; one not computed is left out.
    assert (metrics["lda/natural_rate_stratified"], metrics["lda/natural_rate_stratified_hi"]) == (0.02, 0.05)
    assert not any(k.startswith("lda/natural_rate_importance") for k in metrics)
    assert not any(k.endswith(("_reason", "_method", "_mass", "_weights", "_token", "flagged_ess", "_whole", "tokens",
                               "step")) for k in metrics)


def test_an_arm_reads_as_counts_rate_and_interval():
    assert str(FlagRate(n=10, flagged=4, unscored=1, rate=Interval(0.4, 0.1682, 0.6873))) == "4/10 0.400 [0.168, 0.687]"
    assert str(FlagRate(n=0, flagged=0, unscored=3, rate=Interval(None, 0.0, 1.0))) == "0/0"
