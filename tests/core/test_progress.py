"""What a person watching the terminal sees: the evaluation line (with why a natural-rate
estimate was withheld) and progress lines that never land on a progress bar's line."""

from __future__ import annotations

import io
import logging
import re

from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.progress import (
    BarSafeHandler,
    EvaluationProgress,
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
    # Independent of the code under test: 0 of 16 scored rollouts flagged, and the rule needs flagged ones.
    # No stratified rounds were asked for, so importance sampling alone is the estimate (at 95%).
    assert reason.startswith("0 flagged rollouts in the pool") and "upper bound from 0/8 plain" in reason
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


# ----- progress inside an evaluation ------------------------------------------------------------
# 3 prompts at alpha 2: 4 amplified and 2 plain rollouts each, and a natural-rate ladder of three
# alphas (0.25, 0.5, 1; off by default) with 1 rollout each: 12 amplified, 6 plain, 9 estimate.
EXPECTED = {"amplified": 12, "plain": 6, "estimate": 9}


def _progress_evaluation(tokenizer, llama_pair, progress):
    items = load_prompts(["hello", "tell me a story", "why is the sky blue"])
    judge = build_judge("regex:never-generated-\\d{9}")
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=4, plain_samples_per_prompt=2,
                              estimate_alphas=[0.25, 0.5, 1.0], estimate_samples_per_prompt=1, max_new_tokens=5,
                              seed=1, batch_size=8)
    return evaluate(TwoModelPair(*llama_pair, tokenizer), items, judge, alpha=2.0, measurement=measurement,
                    step=5, run_id="t", source="audit", progress=progress)


def test_progress_counts_every_rollout_of_each_phase_off_a_terminal(tokenizer, llama_pair):
    lines: list[str] = []
    progress = EvaluationProgress("step 5", stream=io.StringIO(), emit=lines.append, interval=1e9)
    evaluation = _progress_evaluation(tokenizer, llama_pair, progress)
    by_kind = {kind: sum(r.kind == kind for r in evaluation.records) for kind in EXPECTED}
    assert by_kind == EXPECTED and progress.done == EXPECTED and progress.totals == EXPECTED
    for phase, total in EXPECTED.items():
        pattern = rf"step 5 {phase}: (\d+)/{total} rollouts \(\d+%\), \d+ s elapsed(, ~\d+ s left in the evaluation)?$"
        counts = [int(m.group(1)) for m in (re.match(pattern, line) for line in lines) if m]
        # A line at each quarter crossed (several quarters may pass at once), the last one at 100%.
        assert counts == sorted(counts) and counts[-1] == total and 1 <= len(counts) <= 4, lines
    assert len(lines) == sum(1 for line in lines if re.match(r"step 5 (amplified|plain|estimate): ", line))


def test_progress_draws_one_bar_per_phase_on_a_terminal(tokenizer, llama_pair):
    terminal, lines, finals = FakeTerminal(), [], {}

    class Recording(EvaluationProgress):
        def close(self):
            finals.update({phase: (bar.n, bar.total) for phase, bar in self.bars.items()})
            super().close()

    _progress_evaluation(tokenizer, llama_pair, Recording("step 5", stream=terminal, emit=lines.append))
    assert finals == {phase: (n, n) for phase, n in EXPECTED.items()}
    assert not lines, "a terminal gets bars, not lines"
    drawn = terminal.getvalue()
    assert all(f"step 5 {phase}" in drawn and f"/{n}" in drawn for phase, n in EXPECTED.items())


def test_plain_lines_come_every_interval_and_each_quarter():
    now = [0.0]
    lines: list[str] = []
    progress = EvaluationProgress("step 1", stream=io.StringIO(), emit=lines.append, interval=30, clock=lambda: now[0])
    progress.begin({"amplified": 100, "plain": 0})
    assert progress.totals == {"amplified": 100}  # an empty phase gets no line
    for _ in range(20):  # 20 rollouts in 20 s: not a quarter, not 30 s
        now[0] += 1
        progress.advance("amplified")
    assert lines == []
    now[0] += 10  # 30 s since the start
    progress.advance("amplified")
    # 21 done in 30 s: 79 left at that rate = 112.857 s
    assert lines == ["step 1 amplified: 21/100 rollouts (21%), 30 s elapsed, ~113 s left in the evaluation"]
    progress.advance("amplified", 4)  # 25: a quarter
    assert lines[-1].startswith("step 1 amplified: 25/100 rollouts (25%)") and len(lines) == 2
    progress.advance("amplified", 75)
    assert lines[-1] == "step 1 amplified: 100/100 rollouts (100%), 30 s elapsed, ~0 s left in the evaluation"


def test_no_time_left_from_the_first_few_rollouts():
    now = [0.0]
    lines: list[str] = []
    progress = EvaluationProgress("step 1", stream=io.StringIO(), emit=lines.append, clock=lambda: now[0])
    progress.begin({"amplified": 50, "plain": 50})
    now[0] = 39
    progress.advance("amplified")  # 30 s passed: a line, but 1 of 100 done is too few to tell the time left
    progress.advance("amplified", 12)  # 13/50 passes a quarter; 13 of 100 in 39 s, 87 left: 261 s
    assert lines == ["step 1 amplified: 1/50 rollouts (2%), 39 s elapsed",
                     "step 1 amplified: 13/50 rollouts (26%), 39 s elapsed, ~261 s left in the evaluation"]


def test_a_resumed_unit_starts_from_its_finished_rollouts():
    now = [0.0]
    lines: list[str] = []
    progress = EvaluationProgress("unit", stream=io.StringIO(), emit=lines.append, clock=lambda: now[0])
    progress.begin({"plain": 8}, {"plain": 4})
    now[0] = 10
    progress.advance("plain", 2)  # 6/8 crosses 75%; 2 new in 10 s, 2 left: 10 s more
    assert lines == ["unit plain: 6/8 rollouts (75%), 10 s elapsed, ~10 s left in the evaluation"]


def test_the_confirmation_round_is_a_phase_of_its_own(tokenizer, llama_pair):
    """Its size is known only after the screening: it is added then, and counted to its end."""
    lines: list[str] = []
    progress = EvaluationProgress("step 5", stream=io.StringIO(), emit=lines.append, interval=1e9)
    items = load_prompts(["hello", "tell me a story", "why is the sky blue"])
    judge = build_judge("regex:never-generated-\\d{9}")
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=6, natural_rate=False,
                              discovery_confirm_samples_per_prompt=3, max_new_tokens=5, seed=1, batch_size=8)
    evaluation = evaluate(TwoModelPair(*llama_pair, tokenizer), items, judge, alpha=2.0, measurement=measurement,
                          step=5, run_id="t", source="audit", progress=progress)
    confirm = sum(r.kind == "confirm" for r in evaluation.records)
    assert confirm and progress.totals["confirm"] == progress.done["confirm"] == confirm
    assert any(line.startswith(f"step 5 confirm: {confirm}/{confirm} rollouts") for line in lines), lines
