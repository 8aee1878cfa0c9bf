"""What a person watching the terminal sees: the evaluation line (with why a natural-rate
estimate was withheld) and progress lines that never land on a progress bar's line."""

from __future__ import annotations

import io
import logging

from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.progress import (
    BarSafeHandler,
    evaluation_line,
    natural_rate_reason,
    progress_logger,
)
from lda_monitor.core.prompts import load_prompts
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.judges import build_judge


def _evaluation(tokenizer, llama_pair, **options):
    items = load_prompts(["hello", "tell me a story"])
    judge = build_judge("regex:never-generated-\\d{9}")  # flags nothing: too few flagged for an interval
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=4, plain_samples_per_prompt=4,
                              max_new_tokens=4, seed=1, **options)
    return evaluate(TwoModelPair(*llama_pair, tokenizer), items, judge, alpha=1.0, measurement=measurement,
                    step=5, run_id="t", source="audit")


def test_the_line_says_why_the_natural_rate_was_withheld(tokenizer, llama_pair):
    evaluation = _evaluation(tokenizer, llama_pair)
    metrics = evaluation.metrics()
    assert "lda/natural_rate" not in metrics and metrics["lda/natural_rate_hi"] > 0
    reason = natural_rate_reason(evaluation)
    # Independent of the code under test: 0 of 16 scored rollouts flagged, and the rule needs flagged ones;
    # both estimates are withheld and each says why.
    assert reason.startswith("importance sampling: 0 flagged rollouts in the pool")
    assert "upper bound from 0/8 plain" in reason
    assert "stratified plain rollouts: 0 flagged plain rollouts" in reason
    line = evaluation_line(5, metrics, reason)
    assert f"natural withheld (<= {metrics['lda/natural_rate_hi']:.4f}): {reason}" in line


def test_the_line_names_the_published_estimate():
    metrics = {"lda/n": 8, "lda/flagged": 2, "lda/n_plain": 8, "lda/natural_rate": 0.02, "lda/natural_rate_lo": 0.01,
               "lda/natural_rate_hi": 0.05, "lda/natural_rate_stratified": 0.02, "lda/natural_rate_importance": 0.03}
    assert "natural 0.0200 [0.0100, 0.0500] (stratified)" in evaluation_line(1, metrics)
    metrics["lda/natural_rate_stratified"] = 0.01
    assert "natural 0.0200 [0.0100, 0.0500] |" in evaluation_line(1, metrics)


def test_no_natural_part_when_the_estimate_is_off(tokenizer, llama_pair):
    evaluation = _evaluation(tokenizer, llama_pair, natural_rate=False)
    assert natural_rate_reason(evaluation) is None
    assert "natural" not in evaluation_line(5, evaluation.metrics(), None)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen_lines(text: str) -> list[str]:
    """What a terminal shows for ``text``: '\\r' returns to column 0 and overwrites, '\\n' ends a
    line; tqdm's cursor-up escape for the bar's own line is dropped."""
    lines = []
    for raw in text.replace("\x1b[A", "").split("\n"):
        screen: list[str] = []
        for piece in raw.split("\r"):  # each piece starts at column 0
            screen[:len(piece)] = piece
        lines.append("".join(screen).rstrip())
    return lines


def test_a_progress_line_gets_its_own_line_while_a_bar_is_drawn():
    from tqdm import tqdm

    terminal = FakeTerminal()
    logger = logging.getLogger("tests.progress.bar")
    logger.propagate = False
    handler = BarSafeHandler(terminal)
    logger.addHandler(handler)
    try:
        with tqdm(total=10, file=terminal, desc="training", mininterval=0) as bar:
            bar.update(3)
            logger.warning("lda-monitor step 3: alpha 1")
            bar.update(3)
    finally:
        logger.removeHandler(handler)
    assert "lda-monitor step 3: alpha 1" in screen_lines(terminal.getvalue())


def test_screen_lines_sees_a_line_written_onto_a_bar():  # the check above can fail
    from tqdm import tqdm

    terminal = FakeTerminal()
    with tqdm(total=10, file=terminal, desc="training", mininterval=0) as bar:
        bar.update(3)
        terminal.write("lda-monitor step 3: alpha 1\n")
    assert "lda-monitor step 3: alpha 1" not in screen_lines(terminal.getvalue())


def test_the_default_handler_is_bar_safe(monkeypatch):
    logger = logging.getLogger("lda_monitor.core.progress")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)
    assert isinstance(progress_logger().handlers[0], BarSafeHandler)


def test_a_given_estimate_shows_its_interval_without_a_reason():
    metrics = {"lda/n": 10, "lda/flagged": 1, "lda/natural_rate": 0.01, "lda/natural_rate_lo": 0.005,
               "lda/natural_rate_hi": 0.02}
    line = evaluation_line(1, metrics, None)
    assert "natural 0.0100 [0.0050, 0.0200]" in line and "withheld" not in line
