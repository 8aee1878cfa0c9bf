"""The cost forecast: said once after the first evaluation and training step, with the knob."""

from __future__ import annotations

import pytest

from lda_monitor.monitor.cost import forecast
from tests.tiny import build_tokenizer, tiny_llama
from tests.training import make_monitor, tokenized_dataset, train


def test_share_and_knob_closed_form():
    f = forecast(eval_seconds=30.0, step_seconds=1.0, every_n_steps=10, max_steps=100, warn_time_share=0.2)
    assert f.share == pytest.approx(30 / 40)
    # 30 / (30 + n) <= 0.2  <=>  n >= 120
    assert f.every_n_steps_for_target == 120
    assert "every_n_steps=120" in f.message() and "11 evaluations" in f.message()
    cheap = forecast(eval_seconds=1.0, step_seconds=1.0, every_n_steps=50, max_steps=None, warn_time_share=None)
    assert cheap.share == pytest.approx(1 / 51) and "set every_n_steps" not in cheap.message()


def test_callback_warns_once_with_the_knob(tmp_path):
    tokenizer = build_tokenizer()
    monitor = make_monitor(every_n_steps=3, warn_time_share=0.01)  # a tiny model's step is far cheaper
    with pytest.warns(UserWarning) as caught:
        train(tiny_llama(tokenizer, seed=3), tokenizer, tokenized_dataset(tokenizer), tmp_path, [monitor], max_steps=6)
    lines = [str(w.message) for w in caught if "monitoring will take" in str(w.message)]
    assert len(lines) == 1 and "at every_n_steps=3" in lines[0] and "For at most 1%, set every_n_steps=" in lines[0]
