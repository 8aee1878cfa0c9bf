"""Monitoring failures, budgets and the guardrail never hurt the training run unless asked to."""

from __future__ import annotations

import warnings
from functools import partial

import pytest
from transformers import TrainerCallback

from lda_monitor.judges import Judge
from tests.training import LogRecorder, loss_rows, make_monitor, monitor_rows, train

_train = partial(train, max_steps=4)


class ExplodingJudge:
    """A third-party judge object whose evaluate() itself raises."""

    name = "exploding"

    def evaluate(self, prompts, completions, metadata=None):
        raise RuntimeError("judge crashed")


class OutageJudge(Judge):
    """A Judge whose backend is down: the base class turns the exception into unscored verdicts."""

    name = "outage"

    def judge(self, prompts, completions, metadata):
        raise TimeoutError("judge server unreachable")


def test_a_crashing_judge_warns_counts_errors_and_training_completes(policy, tokenizer, dataset, tmp_path):
    with pytest.warns(UserWarning, match="judge crashed"):
        trainer = _train(policy, tokenizer, dataset, tmp_path, [make_monitor(judge=ExplodingJudge(), every_n_steps=2)])
    assert trainer.state.global_step == 4
    assert [r["step"] for r in loss_rows(trainer.state.log_history)] == [1, 2, 3, 4]
    rows = monitor_rows(trainer.state.log_history)
    assert [(r["step"], r["lda/errors"]) for r in rows] == [(0, 1.0), (2, 2.0), (4, 3.0)]
    assert not any("lda/flag_rate" in r for r in rows)


def test_fail_on_error_raises(policy, tokenizer, dataset, tmp_path):
    with pytest.raises(RuntimeError, match="judge crashed"):
        _train(policy, tokenizer, dataset, tmp_path, [make_monitor(judge=ExplodingJudge(), fail_on_error=True)])


def test_a_failing_rollout_warns_and_training_completes(policy, tokenizer, dataset, tmp_path, monkeypatch):
    def broken_sample(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr("lda_monitor.core.evaluation.sample", broken_sample)
    with pytest.warns(UserWarning, match="out of memory"):
        trainer = _train(policy, tokenizer, dataset, tmp_path, [make_monitor(every_n_steps=2)])
    assert trainer.state.global_step == 4
    assert [r["lda/errors"] for r in monitor_rows(trainer.state.log_history)] == [1.0, 2.0, 3.0]


def test_a_judge_outage_is_unscored_never_safe(policy, tokenizer, dataset, tmp_path):
    with pytest.warns(UserWarning, match=r"judge 'outage' could not score 24 of 24 rollouts \(100%\)"):
        trainer = _train(policy, tokenizer, dataset, tmp_path,
                         [make_monitor(judge=OutageJudge(), every_n_steps=4, natural_rate=False)])
    rows = monitor_rows(trainer.state.log_history)
    for errors, row in enumerate(rows, start=1):
        assert row["lda/unscored"] == 12 and row["lda/n"] == 0 and row["lda/judge_failures"] == 24
        assert row["lda/errors"] == errors, "an evaluation the judge mostly failed counts as an error"
        assert "lda/flag_rate" not in row, "no rate from zero scored rollouts (a 0 would read as safe)"


def test_a_dead_judge_server_warns_once_per_evaluation_and_costs_seconds(policy, tokenizer, dataset, tmp_path):
    from tests.scripted_server import dead_port

    judge = {"type": "llm", "base_url": f"http://127.0.0.1:{dead_port()}/v1", "model": "m",
             "prompt": "Q: {question} A: {answer}", "flag_below": 30}  # default retries, backoff, breaker
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _train(policy, tokenizer, dataset, tmp_path,
                         [make_monitor(judge=judge, every_n_steps=4, natural_rate=False)])
    judge_warnings = [str(w.message) for w in caught if "could not score" in str(w.message)]
    assert len(judge_warnings) == 2, judge_warnings  # steps 0 and 4: one each
    assert all("judge 'llm'" in m and "24 of 24 rollouts (100%)" in m and "ConnectError" in m for m in judge_warnings)
    rows = monitor_rows(trainer.state.log_history)
    assert [r["lda/judge_failures"] for r in rows] == [24.0, 24.0]
    assert [r["lda/errors"] for r in rows] == [1.0, 2.0]
    # Without the breaker each evaluation spent ~40 s retrying (two judge calls of ~19 s).
    assert all(r["lda/eval_seconds"] < 8 for r in rows), [r["lda/eval_seconds"] for r in rows]


class BrokenBackend(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if any(k.startswith("lda/") for k in logs):
            raise ConnectionError("tracking server down")


def test_a_failing_reporting_backend_does_not_starve_the_others(policy, tokenizer, dataset, tmp_path):
    recorder = LogRecorder()
    with pytest.warns(UserWarning, match="tracking server down"):
        trainer = _train(policy, tokenizer, dataset, tmp_path,
                         [make_monitor(every_n_steps=4), BrokenBackend(), recorder])
    assert [step for step, logs in recorder.events if "lda/alpha" in logs] == [0, 4]
    assert [step for step, logs in recorder.events if "loss" in logs] == [1, 2, 3, 4]
    assert [r["lda/errors"] for r in monitor_rows(trainer.state.log_history)] == [0.0, 1.0]


class FlagFlipper(TrainerCallback):
    """A misbehaving integration that flips the loop's control flags when it sees our metrics."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "lda/alpha" in logs:
            control.should_training_stop = control.should_save = control.should_evaluate = True
            control.should_log = False


def test_replayed_log_events_cannot_change_the_training_loop(policy, tokenizer, dataset, tmp_path):
    trainer = _train(policy, tokenizer, dataset, tmp_path, [make_monitor(every_n_steps=1), FlagFlipper()])
    assert trainer.state.global_step == 4
    assert [r["step"] for r in loss_rows(trainer.state.log_history)] == [1, 2, 3, 4]
    assert not any(p.name.startswith("checkpoint-") for p in tmp_path.iterdir())


def test_time_budget_reports_partial_results(policy, tokenizer, dataset, tmp_path):
    # batch_size 4 with 4 samples per prompt: one prompt per chunk; the budget is spent after it.
    monitor = make_monitor(every_n_steps=4, batch_size=4, max_eval_seconds=1e-9, warn_time_share=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _train(policy, tokenizer, dataset, tmp_path, [monitor])
    messages = [str(w.message) for w in caught]
    assert any("skipped 2 of 3 prompts (16 rollouts)" in m for m in messages)  # 4 amplified + 4 plain each
    assert sum("of the training wall time" in m for m in messages) == 1, "the time-share warning fires once"
    for row in monitor_rows(trainer.state.log_history):
        assert row["lda/n"] == 4 and row["lda/n_plain"] == 4 and row["lda/skipped_rollouts"] == 2 * 8


@pytest.mark.parametrize("action", ["alert", "stop"])
def test_guardrail(policy, tokenizer, dataset, tmp_path, action):
    monitor = make_monitor(judge="regex:.", stop_on_flag_rate_lower_bound=0.5, guardrail_action=action)
    with pytest.warns(UserWarning, match="guardrail"):
        trainer = _train(policy, tokenizer, dataset, tmp_path, [monitor], max_steps=3)
    rows = monitor_rows(trainer.state.log_history)
    assert rows[0]["lda/alert"] == 1.0 and rows[0]["lda/flag_rate_lo"] > 0.5
    # "stop" ends training after the first step (the step-0 evaluation asked for it).
    assert trainer.state.global_step == (1 if action == "stop" else 3)
