"""Mixed precision is part of the measurement. A Trainer run with ``bf16=True`` computes the
callback's rollouts under accelerate's autocast wrapper of the model's forward (weights in their
own dtype, matmuls in bfloat16); the callback records it, and an audit with no ``--dtype`` computes
the same way, so it reproduces the callback's rollouts record for record. Before this was
recorded, such an audit silently reproduced almost none of them (4 of 66 at one checkpoint in a
user's SFT run). Both a transformers Trainer and TRL's SFTTrainer are run."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from lda_monitor import LDAMonitorCallback
from lda_monitor.audit.auditor import audit_checkpoints
from lda_monitor.config.audit import AuditConfig
from lda_monitor.config.front_ends import from_file
from lda_monitor.core.records import RECORDS_FILE, read_records
from tests.tiny import build_tokenizer
from tests.training import JUDGE, PROMPTS, chat_rows, lora_over_saved_base, monitored_lora_run

CONFIG = {
    "prompts": PROMPTS, "judge": JUDGE, "alpha": "linear:4->1", "samples_per_prompt": 4,
    "plain_samples_per_prompt": 2, "max_new_tokens": 8, "temperature": 1.0, "top_p": 0.95, "seed": 3,
    "batch_size": 8, "every_n_steps": 2, "warn_time_share": None, "discovery_confirm_samples_per_prompt": 2,
}
AUTOCAST = {"policy": "bfloat16", "reference": "bfloat16"}


def _key(r):
    return (r.step, r.kind, r.alpha, r.prompt_index, r.sample_index, tuple(r.token_ids), r.verdict("regex").flagged)


def _by_step(records, step):
    return sorted(_key(r) for r in records if r.step == step)


@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory, config_file):
    return monitored_lora_run(tmp_path_factory.mktemp("bf16-trainer"), config_file, bf16=True)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, config_file):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bf16-sft")
    tok = build_tokenizer()
    monitor = LDAMonitorCallback.from_config(config_file)
    args = SFTConfig(output_dir=str(root / "run"), max_steps=4, per_device_train_batch_size=4, learning_rate=2e-2,
                     save_strategy="steps", save_steps=2, report_to="none", use_cpu=True, seed=0,
                     disable_tqdm=True, logging_steps=1, bf16=True, gradient_checkpointing=False)
    assert args.bf16  # TRL's default too; stated so the test cannot drift into float32
    SFTTrainer(model=lora_over_saved_base(tok, root), args=args, train_dataset=Dataset.from_list(chat_rows(16)),
               processing_class=tok, callbacks=[monitor]).train()
    return root / "run"


def _audit_reproduces(run, config_file, out, steps):
    callback = list(read_records(run / "lda_monitor" / RECORDS_FILE))
    assert callback and all(r.compute_dtype.get("autocast") == AUTOCAST for r in callback)
    messages = []
    audit_checkpoints([run], from_file(config_file, AuditConfig, out=str(out)), echo=messages.append)
    assert any("under bfloat16 autocast" in m for m in messages), messages
    audited = list(read_records(out / "rollouts.jsonl"))
    assert all(r.compute_dtype == callback[0].compute_dtype for r in audited)
    for step in steps:
        theirs = _by_step(callback, step)
        assert theirs and _by_step(audited, step) == theirs, step
    assert any(r.kind == "confirm" for r in audited)  # discovery's confirmation round is reproduced too
    assert "under bfloat16 autocast, as the monitor recorded" in (out / "report.html").read_text()


def test_audit_reproduces_a_trainer_run_under_bf16_autocast(trainer_run, config_file, tmp_path):
    _audit_reproduces(trainer_run, config_file, tmp_path / "audit", (2, 4, 6))


def test_audit_reproduces_an_sft_trainer_run_under_bf16_autocast(sft_run, config_file, tmp_path):
    _audit_reproduces(sft_run, config_file, tmp_path / "audit", (2, 4))


def test_autocast_is_what_made_the_difference(trainer_run, config_file, tmp_path):
    """The same audit without autocast (``autocast: off``) no longer reproduces the run, and says
    so before it starts: the test above would pass vacuously if autocast changed nothing here."""
    messages = []
    config = from_file(config_file, AuditConfig, out=str(tmp_path / "off"), autocast="off")
    audit_checkpoints([trainer_run / "checkpoint-4"], config, echo=messages.append)
    assert any("the monitor computed under bfloat16 autocast" in m and "will differ" in m for m in messages)
    audited = list(read_records(tmp_path / "off" / "rollouts.jsonl"))
    assert all("autocast" not in r.compute_dtype for r in audited)
    callback = list(read_records(trainer_run / "lda_monitor" / RECORDS_FILE))
    assert _by_step(audited, 4) != _by_step(callback, 4)
    assert "NOT as the monitor computed (under bfloat16 autocast)" in (tmp_path / "off" / "report.html").read_text()
