"""The cost forecast: said once after the first evaluation and training step, with the knob."""

from __future__ import annotations

import logging
import re

import pytest

from lda_monitor.core.measurement import Measurement
from lda_monitor.core.records import read_records
from lda_monitor.monitor.cost import EvaluationSize, cost_shares, cost_units, fit_size, forecast, full_size, sized
from tests.tiny import build_tokenizer, tiny_llama
from tests.training import make_monitor, tokenized_dataset, train


def test_share_and_knob_closed_form():
    f = forecast(eval_seconds=30.0, step_seconds=1.0, every_n_steps=10, max_steps=1000, warn_time_share=0.2)
    # 101 evaluations of 30 s against 1000 steps of 1 s
    assert f.share == pytest.approx(101 * 30 / (101 * 30 + 1000))
    # n evaluations * 30 <= 0.25 * 1000  <=>  n <= 8: every 125 steps gives 9 (0, 125, ..., 1000), 143 gives 8
    assert f.every_n_steps_for_target == 143
    assert "set every_n_steps=143" in f.message() and "101 evaluations" in f.message()
    cheap = forecast(eval_seconds=1.0, step_seconds=1.0, every_n_steps=50, max_steps=None, warn_time_share=None)
    assert cheap.share == pytest.approx(1 / 51) and "set every_n_steps" not in cheap.message()


def brute_force_every_n(eval_s, step_s, max_steps, target):
    """The smallest every_n_steps within the run, counting its evaluations one step at a time."""
    for n in range(1, max_steps + 1):
        steps = [s for s in range(max_steps + 1) if s % n == 0 or s == max_steps]
        if len(steps) * eval_s / (len(steps) * eval_s + max_steps * step_s) <= target:
            return n
    return None


# The run: 8 prompts x 6 rollouts, 64 tokens, natural_rate on (6 plain rollouts run two
# forwards, like the 6 amplified) with the natural-rate ladder it had by default then (1 rollout at
# each of 3 alphas, two forwards each): 2*6 + 2*6 + 2*1*3 = 30 forward-rows per prompt and token.
def _measurement(**kw):
    return Measurement(**{"prompts": ["p"] * 8, "judge": "regex:x", "samples_per_prompt": 6, "max_new_tokens": 64,
                          "estimate_alphas": [0.25, 0.5, 1.0], **kw})


def test_cost_model_units_and_shares():
    m = _measurement()
    assert cost_units(m, full_size(m, 8)) == 8 * 64 * 30
    assert cost_shares(m) == pytest.approx({"amplified": 12 / 30, "plain": 12 / 30, "estimate": 6 / 30})
    default = _measurement(estimate_alphas=Measurement(prompts=["p"], judge="regex:x").estimate_alphas)
    assert default.estimate_alphas == []  # no ladder by default: 2*6 + 2*6 = 24
    assert cost_units(default, full_size(default, 8)) == 8 * 64 * 24
    assert cost_shares(default) == pytest.approx({"amplified": 12 / 24, "plain": 12 / 24})
    off = _measurement(natural_rate=False)  # plain rollouts run one forward, no ladder
    assert cost_shares(off) == pytest.approx({"amplified": 12 / 18, "plain": 6 / 18})


def test_fit_shrinks_rollouts_then_prompts_then_tokens_to_their_floors():
    m = _measurement()
    # 5120 units: rollouts per prompt down to the floor 2 (2*2 + 2*2 + 2*1*3 = 14 per prompt-token,
    # 8 * 64 * 14 = 7168 still over), then prompts: 5 * 64 * 14 = 4480 fits, 6 would not.
    plan = fit_size(m, 8, 5120)
    assert plan.size == EvaluationSize(prompts=5, samples_per_prompt=2, max_new_tokens=64) and plan.fits
    # 2275 units: prompts reach their floor 4 (3584), then tokens: 4 * 40 * 14 = 2240.
    assert fit_size(m, 8, 2275).size == EvaluationSize(4, 2, 40)
    # Below the floors' 4 * 32 * 14 = 1792: the floors, and the plan says it does not fit.
    floors = fit_size(m, 8, 100)
    assert floors.size == EvaluationSize(4, 2, 32) and not floors.fits and floors.units == 1792
    # Within the budget: as configured.
    assert fit_size(m, 8, 1e9).size == EvaluationSize(8, 6, 64)
    # The adapted measurement: plain follows the amplified rollouts, an explicit count scales.
    smaller = sized(_measurement(plain_samples_per_prompt=3), EvaluationSize(8, 2, 40))
    assert (smaller.samples_per_prompt, smaller.plain_samples, smaller.max_new_tokens) == (2, 1, 40)


def test_advice_stays_within_the_run_and_fits_the_budget():
    # The report: every_n_steps=199 advised on a 40-step run.
    f = forecast(eval_seconds=1.0, step_seconds=1.0, every_n_steps=5, max_steps=40, warn_time_share=0.1,
                 measurement=_measurement(), n_prompts=8)
    assert f.every_n_steps_for_target == brute_force_every_n(1.0, 1.0, 40, 0.1) == 14
    assert "set every_n_steps=14" in f.message()
    # A 6 s evaluation: no every_n_steps within 40 steps reaches 10% (step 0 and the end: 12 / 52),
    # so the advice is to sample less. Budget: 0.1 / 0.9 * 40 s / 5 evaluations = 0.889 s, at
    # 6 s / 15360 units = 2275 units: the 2275-unit plan of the test above.
    f = forecast(eval_seconds=6.0, step_seconds=1.0, every_n_steps=10, max_steps=40, warn_time_share=0.1,
                 measurement=_measurement(), n_prompts=8)
    assert f.every_n_steps_for_target is None and brute_force_every_n(6.0, 1.0, 40, 0.1) is None
    message = f.message()
    assert "no every_n_steps within max_steps=40 does (evaluating at step 0 and the end alone takes ~23%)" in message
    assert "keep every_n_steps=10 and sample less: samples_per_prompt 6->2, prompts 4 of 8, max_new_tokens 64->40" \
        in message
    assert "amplified rollouts ~40%, plain rollouts ~40%, estimate rollouts ~20%" in message
    assert "max_monitor_fraction=0.1" in message
    assert not any(int(n) > 40 for n in re.findall(r"every_n_steps=(\d+)", message))


def test_callback_warns_once_with_the_knob(tmp_path):
    tokenizer = build_tokenizer()
    monitor = make_monitor(every_n_steps=3, warn_time_share=0.01)  # a tiny model's step is far cheaper
    with pytest.warns(UserWarning) as caught:
        train(tiny_llama(tokenizer, seed=3), tokenizer, tokenized_dataset(tokenizer), tmp_path, [monitor], max_steps=6)
    lines = [str(w.message) for w in caught if "monitoring will take" in str(w.message)]
    # 1% of a 6-step run is out of every_n_steps' reach: the advice says so rather than naming one beyond the run.
    assert len(lines) == 1 and "at every_n_steps=3" in lines[0] and "For at most 1%: no every_n_steps within " \
        "max_steps=6 does" in lines[0]
    assert not any(int(n) > 6 for n in re.findall(r"every_n_steps=(\d+)", lines[0]))


def test_max_monitor_fraction_shrinks_the_next_evaluations_and_says_so(tmp_path, caplog):
    tokenizer = build_tokenizer()
    # A tiny model's training step is far cheaper than an evaluation: a 1% share forces the floors.
    # 3 prompts (under the floor 4) and 6 tokens (under 32) stay; rollouts per prompt go 4 -> 2.
    # Step 0 comes before any training step is timed, so it runs at the floors already.
    monitor = make_monitor(every_n_steps=3, max_monitor_fraction=0.01)
    with caplog.at_level(logging.INFO, logger="lda_monitor"), \
            pytest.warns(UserWarning, match=r"max_monitor_fraction=0.01: evaluations after step 1 use "
                                            r"samples_per_prompt 4->2 .*even at these floors an evaluation exceeds "
                                            r"the budget: no every_n_steps within max_steps=6 does"):
        train(tiny_llama(tokenizer, seed=3), tokenizer, tokenized_dataset(tokenizer), tmp_path, [monitor], max_steps=6)
    assert any("step 0 uses samples_per_prompt 4->2 (no training step has been timed yet" in m
               for m in caplog.messages)
    records = list(read_records(tmp_path / "lda_monitor" / "rollouts.jsonl"))
    amplified = {step: [r for r in records if r.step == step and r.kind == "amplified"] for step in (0, 3, 6)}
    assert [len(amplified[s]) for s in (0, 3, 6)] == [6, 6, 6]  # 3 prompts x 2 from the start
    assert all(r.extra["evaluation_size"] == {"prompts": 3, "samples_per_prompt": 2, "max_new_tokens": 6}
               for s in (0, 3, 6) for r in amplified[s])
    assert [row["lda/eval_samples_per_prompt"] for row in monitor.history] == [2.0, 2.0, 2.0]
    assert monitor.state()["attributes"]["monitor_state"]["evaluation_size"]["samples_per_prompt"] == 2


def test_max_monitor_fraction_grows_back_after_a_floor_sized_first_evaluation(tmp_path):
    """A budget the configured size fits: step 0 at the floors, every evaluation after it as configured."""
    tokenizer = build_tokenizer()
    monitor = make_monitor(every_n_steps=3, max_monitor_fraction=0.999)
    train(tiny_llama(tokenizer, seed=3), tokenizer, tokenized_dataset(tokenizer), tmp_path, [monitor], max_steps=6)
    records = list(read_records(tmp_path / "lda_monitor" / "rollouts.jsonl"))
    amplified = {step: [r for r in records if r.step == step and r.kind == "amplified"] for step in (0, 3, 6)}
    assert [len(amplified[s]) for s in (0, 3, 6)] == [6, 12, 12]
    assert all("evaluation_size" not in r.extra for s in (3, 6) for r in amplified[s])
    assert monitor.state()["attributes"]["monitor_state"]["evaluation_size"] is None


def test_floors_over_budget_advise_an_every_n_steps_that_fits_them():
    """When even the floors exceed the budget, the warning names the every_n_steps that fits them:
    the smallest N whose evaluations (step 0, every N-th, the last) at the floors' time take at most
    20% of a 1000-step run of 1 s steps, found here by brute force over N."""
    from transformers import TrainerState

    from lda_monitor.engine.distributed import Ranks

    monitor = make_monitor(every_n_steps=2, max_monitor_fraction=0.2)  # 4 rollouts per prompt, floor 2
    monitor._ranks = Ranks.current()
    full = full_size(monitor.config, len(monitor.items))
    floors = EvaluationSize(full.prompts, 2, full.max_new_tokens)
    floor_seconds = 20.0 * cost_units(monitor.config, floors) / cost_units(monitor.config, full)
    expected = next(n for n in range(1, 1001)
                    if (1000 // n + 1 + (1000 % n > 0)) * floor_seconds <= 0.2 * (1000 // n + 1 + (1000 % n > 0))
                    * floor_seconds + 0.2 * 1000)
    assert expected > 2
    with pytest.warns(UserWarning, match=rf"even at these floors an evaluation exceeds the budget: "
                                         rf"set every_n_steps={expected} \(at these floors monitoring then takes"):
        monitor._fit_budget(TrainerState(max_steps=1000, global_step=2), eval_seconds=20.0, step_seconds=1.0)
    assert monitor.progress.evaluation_size["samples_per_prompt"] == 2
