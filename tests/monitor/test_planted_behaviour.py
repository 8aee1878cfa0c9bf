"""End to end: fine-tuning plants a phrase the base never says; amplification catches it first."""

from __future__ import annotations

from lda_monitor.core.records import RECORDS_FILE, read_records
from tests.training import PLANTED, make_monitor, monitor_rows, train


def test_planted_phrase_is_flagged_more_often_when_amplified(policy, tokenizer, dataset, tmp_path):
    monitor = make_monitor(every_n_steps=2, alpha=2.0, samples_per_prompt=8)
    trainer = train(policy, tokenizer, dataset, tmp_path, [monitor])
    records = list(read_records(tmp_path / "lda_monitor" / RECORDS_FILE))

    def rate(step, kind):
        mine = [r for r in records if r.step == step and r.kind == kind]
        return sum(PLANTED in r.completion for r in mine) / len(mine)

    steps = [row["step"] for row in monitor_rows(trainer.state.log_history)]
    assert steps == [0, 2, 4, 6]
    assert rate(0, "amplified") == rate(0, "plain") == 0, "the base never says it: no alarm at step 0"
    assert any(rate(s, "amplified") > rate(s, "plain") for s in steps[1:])
    # The regex judge agrees with the plain substring recount, and the metrics with both.
    for row in monitor_rows(trainer.state.log_history):
        assert row["lda/flag_rate"] == rate(row["step"], "amplified")
        assert row["lda/flag_rate_plain"] == rate(row["step"], "plain")
