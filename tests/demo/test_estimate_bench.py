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
    assert [r["name"] for r in rows] == ["short", "short/two-proposal", "short/stratified"]
    for row in rows:
        assert {"name", "exact_rate", "seeds", "published", "within_2x", "covering", "forward_pass_gain"} <= set(row)
        assert row["exact_rate"] == pytest.approx(0.01, rel=1e-3) and row["seeds"] == 2
        assert row["covering"] <= row["published"] <= 2 and row["within_2x"] <= row["published"]
        assert sum(row["published_by"].values()) == row["published"]
