"""``lda-monitor bench estimate``: its exact worlds' rates against the tests' own enumeration, and
the schema of estimate.json's rows."""

from __future__ import annotations

import pytest

from lda_monitor.demo import estimate_bench
from lda_monitor.demo.exact_worlds import World, prompt_rates, tokenizer, with_bias
from lda_monitor.demo.gpu_check import small_llama
from tests import exact_enumeration as helpers


def test_world_rates_match_an_independent_enumeration(monkeypatch):
    import torch

    world = World("check", prompts=2, hot=2, max_new_tokens=3, rate=0.0, what="")
    tok = tokenizer()
    bad = tok.convert_tokens_to_ids("bad")
    model = with_bias(small_llama(tok, 1, tiny=True, dtype=torch.float32, device="cpu"), bad, -1.0)
    monkeypatch.setattr(helpers, "EXACT_PROMPTS", ["a a", "a b"])  # the world's first two prompts
    mine = prompt_rates(tok, model, world, helpers.EXACT_TEMPERATURE)
    # float32 forwards: agreement to 1e-6 (the order of a float32 sum moves the 9th digit with the thread count)
    assert sum(mine) / 2 == pytest.approx(helpers.exact_rate(tok, model, bad), rel=1e-6) and 0 < min(mine)


def test_a_world_row_has_the_issue_schema():
    rows = estimate_bench.world_rows("short", seeds=2)
    assert [r["name"] for r in rows] == ["short", "short/ladder", "short/stratified"]
    for row in rows:
        assert {"name", "exact_rate", "seeds", "published", "within_2x", "covering", "forward_pass_gain"} <= set(row)
        assert row["exact_rate"] == pytest.approx(0.01, rel=1e-3) and row["seeds"] == 2
        assert row["covering"] <= row["published"] <= 2 and row["within_2x"] <= row["published"]
        assert sum(row["published_by"].values()) == row["published"]


def test_a_real_model_row_judges_the_published_estimates_against_the_brute_force_rate():
    """The full mode's row (the real model's truth is itself a brute-force count): estimates near
    the short world's 1% are within 2x of, and cover, a brute-force 1%, and neither of a 10%."""
    import torch

    from lda_monitor.core.evaluation import evaluate
    from lda_monitor.core.prompts import load_prompts
    from lda_monitor.core.stats import rate_estimate
    from lda_monitor.demo.exact_worlds import WORLDS, build, judge, prompt_items
    from lda_monitor.engine.pairs import TwoModelPair

    torch.set_num_threads(1)
    world = WORLDS["short"]
    tok, policy, reference, rates = build(world)
    items, flagger = load_prompts(prompt_items(world)), judge()
    spec = estimate_bench.measurement(items, flagger, world)
    per_seed = [evaluate(TwoModelPair(policy, reference, tok), items, flagger, alpha=2.0, measurement=spec, step=s,
                         run_id="t", source="audit").records for s in range(2)]
    truth = sum(rates) / len(rates)
    right = estimate_bench._real_row("w", "default", rate_estimate(k=round(truth * 20_000), n=20_000), per_seed,
                                     "bad", step=1)
    wrong = estimate_bench._real_row("w", "default", rate_estimate(k=2_000, n=20_000), per_seed, "bad", step=1)
    assert right["published"] == wrong["published"] == 2 and right["seeds"] == 2
    assert (right["within_2x"], right["covering"]) == (2, 2) and (wrong["within_2x"], wrong["covering"]) == (0, 0)
    assert right["exact_rate_from"] == f"brute force, {round(truth * 20_000)}/20000 plain rollouts"
    assert right["exact_rate_interval"][0] < truth < right["exact_rate_interval"][1]
    assert right["forward_pass_gain"] > wrong["forward_pass_gain"]  # 10x the truth: far larger relative error
