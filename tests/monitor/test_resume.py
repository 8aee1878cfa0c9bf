"""Resuming from a checkpoint: monitoring continues where the checkpoint left it."""

from __future__ import annotations

import json

import pytest
from transformers import Trainer, TrainerCallback

from lda_monitor.core.records import RECORDS_FILE, read_records
from tests.tiny import tiny_llama
from tests.training import PROMPTS, collate, make_monitor, monitor_rows, training_args

LADDER = [0.25, 0.5, 1.0]  # a natural-rate ladder (off by default), so that resuming redraws its runs too
PER_STEP = len(PROMPTS) * (2 * 4 + 3)  # amplified + plain + natural-rate ladder (3 alphas) rollouts per evaluation


class CrashAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated crash")


def _trainer(tokenizer, dataset, out, callbacks):
    args = training_args(out, max_steps=4, save_strategy="steps", save_steps=2)
    return Trainer(model=tiny_llama(tokenizer, seed=3, attention_dropout=0.1), args=args, train_dataset=dataset,
                   data_collator=collate(tokenizer), processing_class=tokenizer, callbacks=callbacks)


def test_resume_with_the_same_callback_continues_in_place(tokenizer, dataset, tmp_path):
    monitor = make_monitor(every_n_steps=1, alpha="linear:4->1", estimate_alphas=LADDER)
    with pytest.raises(KeyboardInterrupt):  # evaluated steps 0-3, crashed before step 4; checkpoint-2 saved
        _trainer(tokenizer, dataset, tmp_path, [monitor, CrashAt(3)]).train()
    path = tmp_path / "lda_monitor" / RECORDS_FILE
    before = path.read_text().splitlines()
    assert [r.step for r in read_records(path)].count(3) == PER_STEP
    saved = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    saved_state = saved["stateful_callbacks"]["LDAMonitorCallback"]["attributes"]["monitor_state"]
    assert [h["step"] for h in saved_state["history"]] == [0, 1, 2]
    run_id, reference = monitor.run_id, monitor.reference

    trainer = _trainer(tokenizer, dataset, tmp_path, [monitor])
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))

    assert [h["step"] for h in monitor.history] == [0, 1, 2, 3, 4]
    assert [r["step"] for r in monitor_rows(trainer.state.log_history)] == [0, 1, 2, 3, 4]
    assert monitor.run_id == run_id and monitor.reference is reference  # the step-0 snapshot is kept
    assert [s for s, _ in monitor.schedule.history] == [0, 1, 2, 3, 4]
    assert [a for _, a in monitor.schedule.history] == pytest.approx([4.0, 3.25, 2.5, 1.75, 1.0])
    records = list(read_records(path))
    steps = [r.step for r in records]
    # Steps 0-2 were not re-evaluated; step 3 of the crashed trajectory was rolled back and redone.
    # (step 4 detects at alpha 1, the ladder's third alpha, so its ladder has two)
    assert [steps.count(s) for s in range(5)] == [PER_STEP] * 4 + [PER_STEP - len(PROMPTS)]
    after = path.read_text().splitlines()
    assert after[: 3 * PER_STEP] == before[: 3 * PER_STEP], "records are appended, never rewritten"
    assert {r.run_id for r in records} == {run_id}


def test_resume_in_a_new_process_restores_state_and_says_what_changed(tokenizer, dataset, tmp_path):
    first = make_monitor(every_n_steps=2)
    _trainer(tokenizer, dataset, tmp_path, [first]).train()
    fresh = make_monitor(every_n_steps=2)  # a new process: nothing held in memory
    trainer = _trainer(tokenizer, dataset, tmp_path, [fresh])
    with pytest.warns(UserWarning, match="resuming at step 2 without the reference taken at train begin"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert fresh.run_id == first.run_id
    assert [h["step"] for h in fresh.history] == [0, 2, 4]
    assert fresh.history[:2] == first.history[:2]
    assert "step 2" in fresh.reference.description
