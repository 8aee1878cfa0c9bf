"""An evaluation decodes all its runs together (per-row alpha, one prefill per prompt) and its
records are those of one ``sample`` call per run, the way evaluations used to be decoded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from lda_monitor.core import evaluation
from lda_monitor.core.evaluation import (
    evaluate,
    evaluation_seed,
    judge_rollouts,
    rollout_records,
    run_seed,
)
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.prompts import load_prompts
from lda_monitor.engine.pairs import PeftPair, TwoModelPair
from lda_monitor.engine.sampling import sample
from lda_monitor.judges import build_judge
from tests.tiny import tiny_llama

PROMPTS = [{"prompt": "hello"}, {"prompt": "tell me a story about the cat and the dog"}, {"prompt": "write code"},
           {"prompt": [{"role": "system", "content": "you are a bad bot"}, {"role": "user", "content": "hi"}]}]


def _per_run_reference(pair, items, judge, measurement, alpha, step):
    """The records of one ``sample`` call per run (amplified, plain, each ladder alpha)."""
    seed = evaluation_seed(measurement.seed, step)
    prompts = [item.prompt for item in items]
    score_alphas = measurement.score_alphas(alpha)
    records = []
    for kind, kind_alpha, samples in measurement.runs(alpha):
        config = measurement.sampling(kind_alpha, run_seed(seed, kind, kind_alpha))
        rollouts = sample(pair, prompts, config, samples_per_prompt=samples, score_alphas=score_alphas)
        verdicts = judge_rollouts(judge, items, rollouts)
        records += rollout_records(rollouts, items, verdicts, kind=kind, step=step, seed=config.seed, run_id="t",
                                   source="audit", sampling=config, tokenizer=pair.tokenizer)
    return records


def _same(a, b, tol):
    """Records equal field by field; float log-probs within ``tol`` (0: bit for bit)."""
    da, db = a.to_dict(), b.to_dict()
    assert da.keys() == db.keys()
    for key in da:
        x, y = da[key], db[key]
        if tol and key == "proposal_token_logprobs" and x is not None:  # [[alpha, [per token]], ...]
            assert [a for a, _ in x] == [a for a, _ in y]
            for (_, xs), (_, ys) in zip(x, y, strict=True):
                np.testing.assert_allclose(np.array(xs, dtype=float), np.array(ys, dtype=float), atol=tol, rtol=0)
        elif tol and key.startswith(("logprob_", "kl_", "proposal_")) and x is not None:
            np.testing.assert_allclose(np.array(x, dtype=float), np.array(y, dtype=float), atol=tol, rtol=0)
        else:
            assert x == y, (key, x, y)


@pytest.fixture(scope="module")
def peft_pair(tokenizer):
    model = get_peft_model(tiny_llama(tokenizer, seed=7), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    return PeftPair(model.eval(), tokenizer, strategy="doubled")


@pytest.fixture
def one_thread():
    """Bit-for-bit equality across batch shapes holds with one torch thread: with several, how a
    matmul splits its reduction between threads depends on the batch's rows (this test failed when
    run alone with torch's default 2 threads, and passed in the suite after another test set 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("natural_rate", [True, False], ids=["estimate", "no-estimate"])
@pytest.mark.parametrize("source", ["two-models", "peft-doubled"])
def test_records_equal_one_sample_call_per_run(tokenizer, llama_pair, peft_pair, natural_rate, source, monkeypatch,
                                               one_thread):
    pair = TwoModelPair(*llama_pair, tokenizer) if source == "two-models" else peft_pair
    items = load_prompts(PROMPTS)
    judge = build_judge({"type": "regex", "pattern": "cat|dog", "name": "pets"})
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=4, plain_samples_per_prompt=3,
                              natural_rate=natural_rate, estimate_alphas=[0.5, 1.0], estimate_samples_per_prompt=2,
                              max_new_tokens=16, seed=7, temperature=0.8, top_p=0.9, batch_size=64)
    calls = []
    real_sample = evaluation.sample
    monkeypatch.setattr(evaluation, "sample", lambda *a, **k: calls.append(len(k["work"])) or real_sample(*a, **k))
    got = evaluate(pair, items, judge, alpha=3.0, measurement=measurement, step=5, run_id="t", source="audit").records
    monkeypatch.undo()
    want = _per_run_reference(pair, items, judge, measurement, 3.0, 5)
    assert len(got) == len(want) == len(items) * measurement.rollouts_per_prompt(3.0)
    # Two models: bit for bit. PEFT's mixed-adapter forward splits the batch by adapter, so its
    # float32 logits move by ~1e-6 with the batch's composition: same tokens, text and verdicts.
    tol = 0 if source == "two-models" else 1e-5
    for a, b in zip(got, want, strict=True):
        _same(a, b, tol)
    # One decode with the ladder (every row needs the reference forward), else amplified + plain.
    assert calls == ([len(got)] if natural_rate else [4 * 4, 4 * 3])


def test_each_prompt_is_prefilled_once(tokenizer, llama_pair):
    after, before = llama_pair
    items = load_prompts(PROMPTS)
    judge = build_judge({"type": "regex", "pattern": "cat", "name": "cat"})
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=4, max_new_tokens=4, batch_size=64)
    prefill_rows = []
    hook = after.register_forward_pre_hook(
        lambda module, args, kwargs: prefill_rows.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    try:
        result = evaluate(TwoModelPair(after, before, tokenizer), items, judge, alpha=2.0, measurement=measurement,
                          step=1, run_id="t", source="audit")
    finally:
        hook.remove()
    assert len(result.records) > len(items)
    assert prefill_rows == [len(items)]
