""""The same rollouts, the same numbers" outside the comfortable settings: 96-token answers at
top-p 0.9 and temperature 0.8, in a Trainer run with ``bf16=True`` (autocast), the natural-rate
estimate at its defaults and a stratified round. The audit of the run's checkpoints, given the
same file and no ``--dtype``, draws every rollout the callback drew, token for token, and
publishes the same estimate at every step. Long answers are where a wrong position id or a cache
that drifts with batch shape shows: one token off early changes everything after it."""

from __future__ import annotations

import pytest

from lda_monitor.audit.auditor import audit_checkpoints
from lda_monitor.config.audit import AuditConfig
from lda_monitor.config.front_ends import from_file
from lda_monitor.core.records import RECORDS_FILE, read_records
from lda_monitor.core.summary import summarize
from tests.training import JUDGE, PROMPTS, monitored_lora_run

MAX_NEW = 96
CONFIG = {
    "prompts": PROMPTS, "judge": JUDGE, "alpha": "linear:4->1", "samples_per_prompt": 4,
    "plain_samples_per_prompt": 2, "max_new_tokens": MAX_NEW, "temperature": 0.8, "top_p": 0.9, "seed": 11,
    "batch_size": 8, "every_n_steps": 2, "warn_time_share": None, "stratified_samples_per_prompt": 2,
}


def _key(r):
    return (r.step, r.kind, r.alpha, r.prompt_index, r.sample_index, tuple(r.token_ids), r.completion,
            r.verdict("regex").flagged)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory, config_file):
    return monitored_lora_run(tmp_path_factory.mktemp("long-bf16"), config_file, bf16=True)


def test_audit_reproduces_long_answers_and_their_estimate_under_bf16_autocast(long_run, config_file, tmp_path):
    callback = list(read_records(long_run / "lda_monitor" / RECORDS_FILE))
    # The setting is really outside the comfortable one: long answers were drawn, under autocast.
    assert max(r.num_tokens for r in callback) == MAX_NEW
    assert all(r.compute_dtype.get("autocast") == {"policy": "bfloat16", "reference": "bfloat16"} for r in callback)
    audit_checkpoints([long_run], from_file(config_file, AuditConfig, out=str(tmp_path / "audit")), echo=lambda m: None)
    audited = list(read_records(tmp_path / "audit" / "rollouts.jsonl"))
    for step in (2, 4, 6):
        theirs = sorted(_key(r) for r in callback if r.step == step)
        assert theirs and sorted(_key(r) for r in audited if r.step == step) == theirs, step
        assert any(r.kind == "estimate" for r in audited if r.step == step)  # the stratified round, too
        published = [[(r.natural.method, r.natural.rate.value, r.natural.rate.lo, r.natural.rate.hi)
                      for r in summarize(records) if r.step == step and r.category is None]
                     for records in (audited, callback)]
        assert published[0] == published[1], step
