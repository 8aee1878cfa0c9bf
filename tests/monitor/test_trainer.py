"""The callback inside a real transformers.Trainer run on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Trainer, TrainerCallback

from lda_monitor.core.discovery import discover_records
from lda_monitor.core.records import RECORDS_FILE, read_records
from tests.tiny import tiny_llama
from tests.training import (
    PLANTED,
    PROMPTS,
    LogRecorder,
    collate,
    loss_rows,
    make_monitor,
    monitor_rows,
    train,
    training_args,
)


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Textbook Wilson score interval, written out independently of lda_monitor.core.stats."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


class StateProbe(TrainerCallback):
    """Runs after the monitor at every step end and notes what a training step would see."""

    def __init__(self, tokenizer):
        self.tokenizer, self.seen = tokenizer, []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.seen.append({
            "training": model.training and all(m.training for m in model.modules()),
            "use_cache": model.config.use_cache,
            "padding_side": self.tokenizer.padding_side,
            "checkpointing": model.is_activation_checkpointing,
            "grads_require": all(p.requires_grad for p in model.parameters()),
        })


def test_metrics_match_a_recount_of_the_records(policy, tokenizer, dataset, tmp_path):
    monitor = make_monitor()
    reporter, probe = LogRecorder(), StateProbe(tokenizer)
    trainer = train(policy, tokenizer, dataset, tmp_path, [monitor, reporter, probe], gradient_checkpointing=True)

    rows = monitor_rows(trainer.state.log_history)
    assert [r["step"] for r in rows] == [0, 3, 6]
    assert [r["lda/alpha"] for r in rows] == pytest.approx([4.0, 2.5, 1.0])  # linear 4 -> 1 over 6 steps
    records = list(read_records(tmp_path / "lda_monitor" / RECORDS_FILE))
    # 3 evaluations x prompts x (4 amplified + 4 plain); the natural-rate ladder is off by default
    assert len(records) == 3 * len(PROMPTS) * 2 * 4
    assert {r.extra["reference"] for r in records} == {"weight-snapshot"}
    for row in rows:
        for kind, suffix in (("amplified", ""), ("plain", "_plain")):
            mine = [r for r in records if r.step == row["step"] and r.kind == kind]
            flagged = sum(PLANTED in r.completion for r in mine)
            assert row[f"lda/flagged{suffix}"] == flagged
            assert row[f"lda/n{suffix}"] == len(mine) == 12
            assert (row[f"lda/flag_rate{suffix}_lo"], row[f"lda/flag_rate{suffix}_hi"]) == pytest.approx(
                wilson(flagged, 12))
        greet = [r for r in records if r.step == row["step"] and r.kind == "amplified" and r.category == "greet"]
        assert row["lda/by_category/greet/n"] == len(greet) == 8
        assert row["lda/by_category/greet/flagged"] == sum(PLANTED in r.completion for r in greet)
        assert row["lda/unscored"] == 0 and row["lda/errors"] == 0
        assert row["lda/eval_seconds"] > 0 and 0 < row["lda/monitor_time_share"] <= 1
        assert row["lda/skipped_rollouts"] == 0
    # The reporting callbacks got the same rows, at the evaluated step.
    replayed = [(step, logs) for step, logs in reporter.events if "lda/alpha" in logs]
    assert [(step, logs) for step, logs in replayed] == [(r["step"], {k: v for k, v in r.items() if k != "step"})
                                                          for r in rows]
    assert monitor.reference.kind == "weight-snapshot"
    assert all(not p.requires_grad for p in monitor.reference.module.parameters())
    # Right after each evaluation the model is exactly as training left it.
    assert probe.seen and all(s == probe.seen[0] for s in probe.seen)
    assert probe.seen[0] == {"training": True, "use_cache": False, "padding_side": "right",
                             "checkpointing": True, "grads_require": True}


def test_training_is_bitwise_identical_with_and_without_the_monitor(tokenizer, dataset, tmp_path):
    def run(callbacks, out):
        model = tiny_llama(tokenizer, seed=3, attention_dropout=0.1)  # dropout draws from the global RNG
        trainer = train(model, tokenizer, dataset, out, callbacks)
        return trainer, model

    plain, plain_model = run([], tmp_path / "plain")
    monitored, monitored_model = run([make_monitor(every_n_steps=2)], tmp_path / "monitored")
    assert loss_rows(monitored.state.log_history) == loss_rows(plain.state.log_history)
    assert [r["step"] for r in loss_rows(plain.state.log_history)] == [1, 2, 3, 4, 5, 6]
    assert all(torch.equal(a, b) for a, b in zip(plain_model.state_dict().values(),
                                                  monitored_model.state_dict().values(), strict=True))
    assert [r["step"] for r in monitor_rows(monitored.state.log_history)] == [0, 2, 4, 6]
    assert not any("loss" in r for r in monitor_rows(monitored.state.log_history))


def test_evaluate_trigger_follows_the_trainers_evaluations(policy, tokenizer, dataset, tmp_path):
    monitor = make_monitor(trigger="evaluate", every_n_steps=1)
    trainer = Trainer(model=policy, args=training_args(tmp_path, max_steps=4, eval_strategy="steps", eval_steps=3),
                      train_dataset=dataset, eval_dataset=dataset.select(range(4)), data_collator=collate(tokenizer),
                      processing_class=tokenizer, callbacks=[monitor])
    trainer.train()
    # Step 0 baseline, the evaluation at step 3, and the last step; never every step.
    assert [r["step"] for r in monitor_rows(trainer.state.log_history)] == [0, 3, 4]


def test_adaptive_alpha_is_chosen_per_evaluation_and_checkpointed(policy, tokenizer, dataset, tmp_path):
    monitor = make_monitor(alpha="adaptive:kl=0.05,min=0.1,max=8,iters=3", probe_prompts=2)
    trainer = train(policy, tokenizer, dataset, tmp_path, [monitor])
    alphas = [r["lda/alpha"] for r in monitor_rows(trainer.state.log_history)]
    # At step 0 the reference is the policy: KL is 0 at any alpha, so the bisection keeps the max.
    assert alphas[0] == 8.0
    # Later the policy has moved, so full amplification overshoots the KL target.
    assert all(0.1 <= a < 8.0 for a in alphas[1:])
    assert monitor.schedule.history == [(0, 8.0), (3, alphas[1]), (6, alphas[2])]
    assert monitor.state()["attributes"]["monitor_state"]["schedule"]["history"] == [[0, 8.0], [3, alphas[1]],
                                                                                      [6, alphas[2]]]


def test_a_custom_loop_without_a_callback_handler_still_logs(policy, tokenizer, tmp_path):
    """Events called by hand (no CallbackHandler holds the callback): log_history and records only."""
    from transformers import TrainerControl, TrainerState

    monitor = make_monitor(every_n_steps=1)
    args, control = training_args(tmp_path), TrainerControl()
    state = TrainerState(max_steps=1)
    with pytest.warns(UserWarning, match="could not find the Trainer's callback handler"):
        monitor.on_train_begin(args, state, control, model=policy, processing_class=tokenizer)
    state.global_step = 1
    monitor.on_step_end(args, state, control, model=policy, processing_class=tokenizer)
    monitor.on_train_end(args, state, control, model=policy, processing_class=tokenizer)
    assert [r["step"] for r in monitor_rows(state.log_history)] == [0, 1]
    assert {r.step for r in read_records(tmp_path / "lda_monitor" / RECORDS_FILE)} == {0, 1}
    # Other ranks (they sample their share and neither log nor write): tests/distributed.


def test_a_pretrained_adapter_is_snapshotted_without_touching_checkpoints(tokenizer, dataset, tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(tiny_llama(tokenizer, seed=3), lora)  # an adapter that already moved
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    monitor = make_monitor(every_n_steps=2)
    trainer = train(model, tokenizer, dataset, tmp_path, [monitor], max_steps=4, save_strategy="steps", save_steps=2)
    assert monitor.reference.kind == "adapter-snapshot"
    assert [r["step"] for r in monitor_rows(trainer.state.log_history)] == [0, 2, 4]
    assert sorted(n for n, p in model.named_parameters() if p.requires_grad) == trainable
    assert list(model.peft_config) == ["default"] and model.active_adapter == "default"
    for step in (2, 4):
        checkpoint = tmp_path / f"checkpoint-{step}"
        with safe_open(str(checkpoint / "adapter_model.safetensors"), framework="pt") as f:
            assert not any("lda_monitor" in key for key in f.keys())
        assert not (checkpoint / "lda_monitor_reference").exists()
        optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
        assert len(optimizer["state"]) == len(trainable), "the optimizer saw only the policy's adapter"


def test_one_progress_line_per_evaluation_matching_the_records(policy, tokenizer, dataset, tmp_path, caplog):
    import logging
    import re

    caplog.set_level(logging.INFO, logger="lda_monitor.core.progress")
    monitor = make_monitor(every_n_steps=3, alpha=2.5)
    train(policy, tokenizer, dataset, tmp_path, [monitor])
    messages = [r.getMessage() for r in caplog.records if r.name == "lda_monitor.core.progress"]
    lines = [m for m in messages if re.match(r"lda-monitor step \d+: ", m)]
    assert len(lines) == 3, lines  # steps 0, 3, 6
    # Progress inside each evaluation (the log is no terminal): a line per phase at each quarter,
    # ending at 3 prompts x 4 rollouts, amplified and plain (no ladder by default: no estimate phase).
    assert not any(" estimate: " in m for m in messages), messages
    for step in (0, 3, 6):
        for phase, total in (("amplified", 12), ("plain", 12)):
            counts = [int(m.group(1)) for m in (re.match(rf"lda-monitor step {step} {phase}: (\d+)/{total} rollouts",
                                                         line) for line in messages) if m]
            assert counts and counts[-1] == total and counts == sorted(counts), messages
    records = list(read_records(tmp_path / "lda_monitor" / RECORDS_FILE))
    for line, step, metrics in zip(lines, (0, 3, 6), monitor.progress.history, strict=True):
        amp = [r for r in records if r.step == step and r.kind == "amplified"]
        plain = [r for r in records if r.step == step and r.kind == "plain"]
        k, kp = sum(PLANTED in r.completion for r in amp), sum(PLANTED in r.completion for r in plain)
        if "lda/natural_rate" in metrics:
            natural = (re.escape(f"natural {metrics['lda/natural_rate']:.4f} [")
                       + r"\S+, \S+\] \((importance sampling|stratified)\) \| ")
        else:  # withheld: its upper bound from the 12 plain rollouts (Clopper-Pearson, 1 - 0.05^(1/12) for 0)
            natural = re.escape(f"natural withheld (<= {metrics['lda/natural_rate_hi']:.4f}): ") + r"[^|]+ \| "
        expected = (rf"lda-monitor step {step}: alpha 2\.5 \| amplified {k}/12 \({100 * k / 12:.1f}%\) flagged \| "
                    rf"plain {kp}/12 \({100 * kp / 12:.1f}%\) \| {natural}unscored 0 \| "
                    r"(discovery: \d+ over, \d+ under|new over-produced phrase \".+\" over: [^;|]+)"
                    r"(; amplified answers (shorter|longer): [^|]+)? \| \d+\.\d s")
        assert re.fullmatch(expected, line), line
        # A length shift is named when discovery over these records finds one (at step 0 at most
        # as often as the length test's level, 1%: a chance there, not a property of the run).
        (found,) = [d for d in discover_records(records) if d.step == step]
        assert ("; amplified answers " in line) == (found.length is not None), line
    # step 0: nothing flagged; 1 - 0.05 ** (1 / 12) = 0.2209, and the reason says why
    assert "natural withheld (<= 0.2209): 0 flagged rollouts in the pool" in lines[0]
    caplog.clear()
    train(tiny_llama(tokenizer, seed=3), tokenizer, dataset, tmp_path / "quiet",
          [make_monitor(every_n_steps=3, log_progress=False)])
    assert not [r for r in caplog.records if r.name == "lda_monitor.core.progress"]
