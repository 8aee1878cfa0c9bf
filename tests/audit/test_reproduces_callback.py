"""The acceptance test of "one measurement": a Trainer run monitored by the callback and the audit
of its checkpoints, both driven by the same YAML file with non-default sampling, give the same
rollouts token for token at every step both evaluated (float32), also when only one checkpoint
is audited (the alpha schedule then still spans the run's max_steps, not the one step found)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from lda_monitor import LDAMonitorCallback
from lda_monitor.audit.auditor import audit_checkpoints
from lda_monitor.config.audit import AuditConfig
from lda_monitor.config.front_ends import from_file
from lda_monitor.core.records import RECORDS_FILE, read_records
from lda_monitor.core.summary import summarize
from tests.tiny import build_tokenizer, tiny_llama
from tests.training import JUDGE, PROMPTS, monitored_lora_run, tokenized_dataset, train

MEASUREMENT = {
    "prompts": PROMPTS, "judge": JUDGE, "alpha": "linear:4->1", "samples_per_prompt": 3,
    "plain_samples_per_prompt": 2, "max_new_tokens": 6, "temperature": 0.7, "top_p": 0.9,
    "system_prompt": "you are a helpful bot .", "stop_strings": ["hate you"], "seed": 5, "batch_size": 8,
    "discovery_confirm_samples_per_prompt": 2, "estimate_alphas": [0.25, 0.5, 1.0],  # the ladder is off by default
}
# One file for both front ends: every_n_steps is the callback's own key, dtype the audit's.
CONFIG = {**MEASUREMENT, "every_n_steps": 2, "warn_time_share": None, "dtype": "float32"}


def _key(r):
    return (r.step, r.kind, r.alpha, r.prompt_index, r.sample_index, tuple(r.token_ids), r.completion,
            r.rendered_prompt, r.verdict("regex").flagged)


def _callback_records(run):
    return list(read_records(run / "lda_monitor" / RECORDS_FILE))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, config_file):
    return monitored_lora_run(tmp_path_factory.mktemp("lora"), config_file).parent


def test_audit_equals_callback_for_a_lora_run(lora_run, config_file, tmp_path, capsys):
    callback = _callback_records(lora_run / "run")
    assert {r.step for r in callback} == {0, 2, 4, 6}
    config = from_file(config_file, AuditConfig, out=str(tmp_path / "all"))
    assert "ignored by audit-checkpoints: every_n_steps, warn_time_share" in capsys.readouterr().err
    audit_checkpoints([lora_run / "run"], config, echo=lambda m: None)
    audited = list(read_records(tmp_path / "all" / "rollouts.jsonl"))
    assert {r.step for r in audited} == {2, 4, 6}
    for step in (2, 4, 6):
        mine = sorted(_key(r) for r in audited if r.step == step)
        theirs = sorted(_key(r) for r in callback if r.step == step)
        assert mine == theirs
        # amplified, plain, the ladder (0.25, 0.5, 1; at step 6 the detection alpha is 1, sampled once)
        assert sum(k[1] != "confirm" for k in mine) == 3 * 3 + 3 * 2 + 3 * (3 if step < 6 else 2)
    # Discovery's confirmation round ran (2 amplified + 2 plain on each prompt of a borderline phrase),
    # and the audit drew the very same rollouts (compared above).
    confirm = [r for r in audited if r.kind == "confirm"]
    assert confirm and {r.extra["confirms"] for r in confirm} <= {r.alpha for r in audited if r.kind == "amplified"}
    assert sum(r.alpha == 0 for r in confirm) * 2 == len(confirm)
    # The non-default settings really were in force: a system turn, stop strings, alpha at step 2 of 6.
    assert all("you are a helpful bot ." in r.rendered_prompt for r in audited)
    assert {r.alpha for r in audited if r.step == 2 and r.kind == "amplified"} == {3.0}


def test_auditing_one_checkpoint_keeps_the_runs_alpha(lora_run, config_file, tmp_path):
    messages = []
    config = from_file(config_file, AuditConfig, out=str(tmp_path / "one"))
    audit_checkpoints([lora_run / "run" / "checkpoint-2"], config, echo=messages.append)
    assert any("spans 6 steps (max_steps in the checkpoints' trainer_state.json)" in m for m in messages)
    audited = list(read_records(tmp_path / "one" / "rollouts.jsonl"))
    callback = [r for r in _callback_records(lora_run / "run") if r.step == 2]
    assert sorted(map(_key, audited)) == sorted(map(_key, callback))


def test_audit_equals_callback_for_full_fine_tuning(tmp_path, config_file):
    """Full fine-tuning: the callback's reference is a weight snapshot at train begin. The audit
    meets it two ways: ``reference: base`` with the initial model as base_model, and
    ``reference: first`` where the first checkpoint is the initial model (checkpoint-0)."""
    torch.set_num_threads(1)
    tok = build_tokenizer()
    policy = tiny_llama(tok, seed=3)
    run = tmp_path / "run"
    policy.save_pretrained(run / "checkpoint-0")
    tok.save_pretrained(run / "checkpoint-0")
    monitor = LDAMonitorCallback.from_config(config_file)
    train(policy, tok, tokenized_dataset(tok), run, [monitor], save_strategy="steps", save_steps=2)
    callback = _callback_records(run)
    for reference, extra in (("base", {"base_model": str(run / "checkpoint-0")}), ("first", {})):
        out = tmp_path / reference
        config = from_file(config_file, AuditConfig, out=str(out), reference=reference, **extra)
        audit_checkpoints([run], config, echo=lambda m: None)
        audited = list(read_records(out / "rollouts.jsonl"))
        assert {r.step for r in audited} == {0, 2, 4, 6}
        for step in (0, 2, 4, 6):
            mine = sorted(_key(r) for r in audited if r.step == step)
            assert mine == sorted(_key(r) for r in callback if r.step == step), (reference, step)
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert {row["step"] for row in summary} == {0, 2, 4, 6}


@pytest.fixture
def auto_is_bfloat16(monkeypatch):
    """A machine whose ``auto`` is bfloat16 (native bf16), whatever CI's CPU has."""
    from lda_monitor.engine import dtypes

    monkeypatch.setattr(dtypes, "auto_dtype", lambda device=None: (torch.bfloat16, "forced by the test"))


def test_audit_without_dtype_reproduces_a_float32_run_where_auto_is_bfloat16(lora_run, config_file, tmp_path,
                                                                            auto_is_bfloat16):
    """The callback computed in float32 (the policy's dtype); the audit, given no dtype on a machine
    whose auto is bfloat16, computes in the recorded float32 and says so: record for record."""
    callback = _callback_records(lora_run / "run")
    assert {r.compute_dtype["policy"] for r in callback} == {"float32"}
    messages = []
    config = from_file(config_file, AuditConfig, out=str(tmp_path / "nodtype"), dtype=None)
    audit_checkpoints([lora_run / "run"], config, echo=messages.append)
    assert any("computing in float32 as the monitor did" in m for m in messages)
    audited = list(read_records(tmp_path / "nodtype" / "rollouts.jsonl"))
    assert all(r.compute_dtype == {"policy": "float32", "reference": "float32"} for r in audited)
    for step in (2, 4, 6):
        assert sorted(_key(r) for r in audited if r.step == step) == sorted(_key(r) for r in callback if r.step == step)


def test_audit_in_another_dtype_says_so_once(lora_run, config_file, tmp_path, auto_is_bfloat16):
    """An explicit dtype that differs from the recorded one is honoured, and said: the records
    then differ from the callback's (what happened silently before the dtype was recorded)."""
    messages = []
    config = from_file(config_file, AuditConfig, out=str(tmp_path / "bf16"), dtype="auto")
    audit_checkpoints([lora_run / "run" / "checkpoint-4"], config, echo=messages.append)
    notes = [m for m in messages if "the monitor computed in float32" in m]
    assert len(notes) == 1 and "auditing in bfloat16" in notes[0]
    audited = list(read_records(tmp_path / "bf16" / "rollouts.jsonl"))
    assert all(r.compute_dtype == {"policy": "bfloat16", "reference": "bfloat16"} for r in audited)
    callback = [r for r in _callback_records(lora_run / "run") if r.step == 4]
    assert sorted(map(_key, audited)) != sorted(map(_key, callback))


def test_audit_and_callback_publish_the_same_stratified_estimate(tmp_path):
    """With the stratified estimate's rounds (a precision target, decided-stop rollouts, no importance
    sampling) the two front ends draw the same rounds and publish the same estimate at every step."""
    settings = {**CONFIG, "stop_strings": [], "importance_sampling": False, "stratified_samples_per_prompt": 3,
                "natural_rate_half_width": 0.05, "natural_rate_max_rollouts": 18}
    path = tmp_path / "stratified.yaml"
    path.write_text(yaml.safe_dump(settings))
    with pytest.warns(UserWarning, match="not the \\+-5% asked"):
        monitored_lora_run(tmp_path, path)
    with pytest.warns(UserWarning, match="not the \\+-5% asked"):
        audit_checkpoints([tmp_path / "run"], from_file(path, AuditConfig, out=str(tmp_path / "audit")),
                          echo=lambda m: None)
    callback = _callback_records(tmp_path / "run")
    audited = list(read_records(tmp_path / "audit" / "rollouts.jsonl"))
    for step in (2, 4, 6):
        mine = sorted(_key(r) for r in audited if r.step == step)
        theirs = sorted(_key(r) for r in callback if r.step == step)
        rounds = [r for r in audited if r.step == step and r.kind == "estimate"]
        # Two rounds of 3 x 3 rollouts (the budget of 18), all plain, none of the importance ladder.
        assert mine == theirs and len(rounds) == 18 and {r.alpha for r in rounds} == {0.0}
        published = [[r.natural for r in summarize(records) if r.step == step and r.category is None]
                     for records in (audited, callback)]
        assert published[0] == published[1] and published[0][0].method in ("stratified-gamma", "upper-bound")
