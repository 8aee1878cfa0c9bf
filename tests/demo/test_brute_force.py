"""The brute-force reference (benchmark and full demo): right against an exact rate, its cache
extends without changing a count, and the demo's one-step check leaves training untouched."""

from __future__ import annotations

import json

import pytest
import torch

from lda_monitor.core.measurement import Measurement
from lda_monitor.core.prompts import load_prompts
from lda_monitor.demo.brute_force import BruteForceCheck, CheckResult, brute_force_rate
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.judges import build_judge
from tests.exact_enumeration import EXACT_MAX_NEW, EXACT_PROMPTS, EXACT_TEMPERATURE, EXACT_WORDS, exact_rate, with_bias
from tests.tiny import build_tokenizer, tiny_llama
from tests.training import loss_rows, make_monitor, tokenized_dataset, train


@pytest.fixture(scope="module")
def exact_setup():
    tok = build_tokenizer(EXACT_WORDS)
    bad = tok.convert_tokens_to_ids("bad")
    base = tiny_llama(tok, seed=5)
    policy = with_bias(base, bad, -1.5)
    judge = build_judge({"type": "regex", "pattern": r"\bbad\b", "name": "bad"})
    items = load_prompts(EXACT_PROMPTS)
    sampling = Measurement(prompts=items, judge=judge, max_new_tokens=EXACT_MAX_NEW, temperature=EXACT_TEMPERATURE,
                           batch_size=64).sampling(alpha=3.0, seed=11)  # both replaced by the brute force
    return TwoModelPair(policy, with_bias(base, bad, -3.0), tok), items, judge, sampling, exact_rate(tok, policy, bad)


def test_brute_force_rate_matches_the_exact_rate_of_the_policy(exact_setup):
    pair, items, judge, sampling, exact = exact_setup
    rate = brute_force_rate(pair, items, judge, 400, sampling)
    assert rate.n == 400 * len(EXACT_PROMPTS)
    assert rate.lo <= exact <= rate.hi
    # The amplified sampler's rate (alpha 3 in `sampling`) is far higher: plain was really used.
    assert abs(rate.rate - exact) < 3 * (exact * (1 - exact) / rate.n) ** 0.5


def test_a_cached_count_extends_and_shrinks_to_the_fresh_count(exact_setup, tmp_path):
    pair, items, judge, sampling, _ = exact_setup
    cache = tmp_path / "brute.json"
    fresh = {n: brute_force_rate(pair, items, judge, n, sampling) for n in (20, 30, 50)}
    for n in (30, 50, 20, 50):  # 30 leaves a partial second chunk that 50 must not reuse
        cached = brute_force_rate(pair, items, judge, n, sampling, cache=cache)
        assert (cached.k, cached.n) == (fresh[n].k, fresh[n].n)
    assert [c["per_prompt"] for c in json.loads(cache.read_text())] == [20, 20, 10]


def test_check_result_reads_coverage_and_the_2x_target():
    base = dict(step=4, brute_k=20, brute_n=1000, brute_rate=0.02, brute_lo=0.013, brute_hi=0.031, seconds=1.0)
    inside = CheckResult(estimate=0.03, lo=0.015, hi=0.05, **base)
    assert inside.covered and inside.within_2x and "inside the interval, within 2x" in inside.line()
    far = CheckResult(estimate=0.05, lo=0.041, hi=0.06, **base)
    assert far.covered is False and far.within_2x is False and "OUTSIDE" in far.line()
    bound = CheckResult(estimate=None, lo=None, hi=0.01, **base)
    assert bound.covered is False and bound.within_2x is None and "VIOLATED" in bound.line()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_demo_check_runs_once_and_leaves_training_bitwise_unchanged(tmp_path, one_thread):
    tok = build_tokenizer()
    dataset = tokenized_dataset(tok)

    def run(with_check: bool, out):
        model = tiny_llama(tok, seed=3, attention_dropout=0.1)  # dropout draws from the global RNG
        monitor = make_monitor(every_n_steps=2)
        lines: list[str] = []
        check = BruteForceCheck(monitor, 5, echo=lines.append)
        trainer = train(model, tok, dataset, out, [monitor, *([check] if with_check else [])])
        return trainer, model, monitor, check, lines

    plain, plain_model, *_ = run(False, tmp_path / "plain")
    checked, checked_model, monitor, check, lines = run(True, tmp_path / "checked")
    assert loss_rows(checked.state.log_history) == loss_rows(plain.state.log_history)
    assert all(torch.equal(a, b) for a, b in zip(plain_model.state_dict().values(),
                                                  checked_model.state_dict().values(), strict=True))
    published = [h["step"] for h in monitor.progress.history if "lda/natural_rate" in h]
    expected = published[0] if published else monitor.progress.history[-1]["step"]
    assert check.result is not None and check.result.step == expected
    assert check.result.brute_n == 5 * len(monitor.items)
    assert sum(line.startswith("brute-force check at step") for line in lines) == 1
