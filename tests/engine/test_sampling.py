"""The decode loop against brute-force references (cache-free full-sequence forwards)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from lda_monitor.engine.chat import encode_rendered, render_prompt
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.engine.sampling import (
    STOP_END_OF_TURN,
    STOP_MAX_TOKENS,
    STOP_STRING,
    SamplingConfig,
    combine,
    kl_divergence,
    sample,
)
from tests.tiny import BigramLM

PROMPTS = [
    "hello",
    "what is the capital of france ? tell me a story about the cat and the dog",
    "write code",
    [{"role": "system", "content": "you are a bad bot"}, {"role": "user", "content": "hi how are you ?"}],
]
STOP_IDS = {0, 1, 2}  # <|endoftext|>, <|im_start|> (a new turn), <|im_end|> in the tiny tokenizer


def ref_last_logits(model, ids: list[int]) -> torch.Tensor:
    """Last-position logits of an unpadded, cache-free forward with default positions."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].double()


def ref_warp(logits: torch.Tensor, temperature=1.0, top_k=0, top_p=1.0, min_p=None) -> torch.Tensor:
    """Hugging Face's warper semantics, written out independently."""
    x = logits / temperature
    if top_k:
        kth = torch.sort(x, descending=True).values[top_k - 1]
        x = torch.where(x < kth, float("-inf"), x)
    if top_p < 1.0:
        order = torch.sort(x, stable=True).indices  # ascending
        cum = torch.softmax(x[order], -1).cumsum(-1)
        drop = cum <= 1 - top_p
        drop[-1] = False
        x = x.clone()
        x[order[drop]] = float("-inf")
    if min_p:
        p = torch.softmax(x, -1)
        x = torch.where(p < min_p * p.max(), float("-inf"), x)
    return x


def prompt_ids(tokenizer, prompt):
    return encode_rendered(tokenizer, render_prompt(tokenizer, prompt))


def brute_force_greedy(after, before, tokenizer, prompt, alpha, max_new):
    ids = prompt_ids(tokenizer, prompt)
    out = []
    for _ in range(max_new):
        a = ref_last_logits(after, ids + out)
        b = ref_last_logits(before, ids + out)
        token = int(torch.argmax((1 + alpha) * a - alpha * b))
        out.append(token)
        if token in STOP_IDS:
            break
    return out


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_greedy_lda_equals_brute_force_loop(family, tokenizer, llama_pair, gpt2_pair, rng_guard):
    after, before = llama_pair if family == "llama" else gpt2_pair
    pair = TwoModelPair(after, before, tokenizer)
    config = SamplingConfig(alpha=2.0, greedy=True, max_new_tokens=12, batch_size=4)
    rollouts = sample(pair, PROMPTS, config)
    for r in rollouts:
        expected = brute_force_greedy(after, before, tokenizer, PROMPTS[r.prompt_index], 2.0, 12)
        assert r.token_ids == expected
        assert r.stop_reason in (STOP_END_OF_TURN, "eos") if expected[-1] in STOP_IDS else STOP_MAX_TOKENS


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_mixed_length_batch_equals_each_prompt_alone(family, tokenizer, llama_pair, gpt2_pair):
    after, before = llama_pair if family == "llama" else gpt2_pair
    pair = TwoModelPair(after, before, tokenizer)
    together = sample(pair, PROMPTS, SamplingConfig(alpha=1.0, greedy=True, max_new_tokens=10, batch_size=8))
    for r in together:
        alone = sample(
            pair, [PROMPTS[r.prompt_index]], SamplingConfig(alpha=1.0, greedy=True, max_new_tokens=10)
        )[0]
        assert r.token_ids == alone.token_ids
        np.testing.assert_allclose(r.logprob_sampled, alone.logprob_sampled, rtol=1e-4, atol=1e-5)


def test_every_step_matches_cache_free_forward(tokenizer, llama_pair):
    """Per-token log-probs under amplified/after/before and the KL, step by step."""
    after, before = llama_pair
    knobs = dict(temperature=0.9, top_k=40, top_p=0.95, min_p=0.01)
    alpha = 1.5
    config = SamplingConfig(alpha=alpha, max_new_tokens=8, seed=3, batch_size=4, **knobs)
    rollouts = sample(TwoModelPair(after, before, tokenizer), PROMPTS, config, samples_per_prompt=2)
    checked = 0
    for r in rollouts:
        prefix = prompt_ids(tokenizer, PROMPTS[r.prompt_index])
        assert r.prompt_token_ids == prefix
        kls = []
        for t, token in enumerate(r.token_ids):
            a = ref_last_logits(after, prefix + r.token_ids[:t])
            b = ref_last_logits(before, prefix + r.token_ids[:t])
            amp = a + alpha * (a - b)
            def lp(x, token=token):
                return float(torch.log_softmax(ref_warp(x, **knobs), -1)[token])

            assert r.logprob_sampled[t] == pytest.approx(lp(amp), abs=2e-4)
            assert r.logprob_after[t] == pytest.approx(lp(a), abs=2e-4)
            assert r.logprob_before[t] == pytest.approx(lp(b), abs=2e-4)
            assert np.isfinite(r.logprob_sampled[t])
            p_amp, p_a = torch.log_softmax(amp, -1), torch.log_softmax(a, -1)
            kls.append(float((p_amp.exp() * (p_amp - p_a)).sum()))
            checked += 1
        assert r.kl_amp_after == pytest.approx(np.mean(kls), rel=1e-3, abs=1e-5)
    assert checked > 20


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_scored_alphas_match_cache_free_forward(tokenizer, llama_pair, alpha):
    """``score_alphas``: each token's log-prob under the sampler at every scored alpha, with the
    same truncation (-inf outside that alpha's nucleus); plain rollouts run the before model."""
    after, before = llama_pair
    knobs = dict(temperature=0.9, top_k=40, top_p=0.9)
    config = SamplingConfig(alpha=alpha, max_new_tokens=6, seed=5, batch_size=4, **knobs)
    rollouts = sample(TwoModelPair(after, before, tokenizer), PROMPTS, config, samples_per_prompt=2,
                      score_alphas=(0.5, 3.0, alpha))
    outside = 0
    for r in rollouts:
        assert set(r.logprob_at) == {0.5, 3.0, alpha} and r.logprob_at[alpha] == r.logprob_sampled
        prefix = prompt_ids(tokenizer, PROMPTS[r.prompt_index])
        for t, token in enumerate(r.token_ids):
            a = ref_last_logits(after, prefix + r.token_ids[:t])
            b = ref_last_logits(before, prefix + r.token_ids[:t])
            for scored in (0.5, 3.0):
                want = float(torch.log_softmax(ref_warp(a + scored * (a - b), **knobs), -1)[token])
                got = r.logprob_at[scored][t]
                assert got == want or got == pytest.approx(want, abs=2e-4)
                outside += want == float("-inf")
    assert outside > 0  # the truncated proposals really miss tokens the others sampled


def test_alpha_zero_and_minus_one_equal_generate(tokenizer, llama_pair):
    after, before = llama_pair
    pair = TwoModelPair(after, before, tokenizer)
    for alpha, reference in ((0.0, after), (-1.0, before)):
        rollouts = sample(pair, PROMPTS, SamplingConfig(alpha=alpha, greedy=True, max_new_tokens=10))
        for r in rollouts:
            ids = torch.tensor([prompt_ids(tokenizer, PROMPTS[r.prompt_index])])
            out = reference.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                eos_token_id=sorted(STOP_IDS), pad_token_id=0,
            )[0, ids.shape[1]:].tolist()
            assert r.token_ids == out[: len(r.token_ids)]
            assert len(out) == len(r.token_ids) or out[len(r.token_ids)] in STOP_IDS | {0}


def test_alpha_zero_skips_the_before_model(tokenizer, llama_pair):
    after, before = llama_pair
    calls = []
    hook = before.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        rollouts = sample(TwoModelPair(after, before, tokenizer), PROMPTS, SamplingConfig(alpha=0.0, max_new_tokens=4))
    finally:
        hook.remove()
    assert calls == []
    assert all(r.logprob_before is None and r.kl_amp_after == 0.0 for r in rollouts)
    assert all(r.logprob_sampled == r.logprob_after for r in rollouts)


def test_first_token_distribution_chi_square(tokenizer, llama_pair):
    """Empirical first tokens over many rollout seeds follow softmax(warped amplified logits)."""
    after, before = llama_pair
    knobs = dict(temperature=1.3, top_k=30, top_p=0.9)
    alpha, n = 0.7, 4000
    prompt = "tell me a story"
    config = SamplingConfig(alpha=alpha, max_new_tokens=1, seed=11, batch_size=1000, **knobs)
    rollouts = sample(TwoModelPair(after, before, tokenizer), [prompt], config, samples_per_prompt=n)
    counts = np.bincount([r.token_ids[0] for r in rollouts], minlength=len(tokenizer))
    ids = prompt_ids(tokenizer, prompt)
    a, b = ref_last_logits(after, ids), ref_last_logits(before, ids)
    probs = torch.softmax(ref_warp(a + alpha * (a - b), **knobs), -1).numpy()
    assert counts[probs == 0].sum() == 0, "sampled a token outside the top-k/top-p support"
    expected = probs * n
    big = expected >= 5
    observed = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    chi2 = ((observed[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    dof = keep.sum() - 1
    assert dof >= 5
    assert chi2 < scipy_stats.chi2.ppf(0.999, dof), (chi2, dof)


def test_rollouts_independent_of_batch_size_and_order(tokenizer, llama_pair, rng_guard):
    after, before = llama_pair
    pair = TwoModelPair(after, before, tokenizer)
    base = dict(alpha=1.0, max_new_tokens=8, seed=5, temperature=1.0)
    big = sample(pair, PROMPTS, SamplingConfig(batch_size=8, **base), samples_per_prompt=2)
    small = sample(pair, PROMPTS, SamplingConfig(batch_size=1, **base), samples_per_prompt=2)
    assert [r.token_ids for r in big] == [r.token_ids for r in small]
    work = [(3, 1), (0, 0)]
    subset = sample(pair, PROMPTS, SamplingConfig(batch_size=3, **base), work=work)
    lookup = {(r.prompt_index, r.sample_index): r.token_ids for r in big}
    assert [r.token_ids for r in subset] == [lookup[w] for w in work]
    other_seed = sample(pair, PROMPTS, SamplingConfig(batch_size=8, **{**base, "seed": 6}), samples_per_prompt=2)
    assert [r.token_ids for r in other_seed] != [r.token_ids for r in big]
    # Named streams: prompt 3 sampled in another request's slot (seed 6, index 0) is that request's row.
    alone = sample(pair, [PROMPTS[3]], SamplingConfig(batch_size=8, **{**base, "seed": 6}), samples_per_prompt=2)
    merged = sample(pair, PROMPTS, SamplingConfig(batch_size=8, **base), work=[(0, 0), (3, 1)],
                    streams=[(5, 0, 0), (6, 0, 1)])
    assert [r.token_ids for r in merged] == [lookup[(0, 0)], alone[1].token_ids]


def test_global_rngs_untouched(tokenizer, llama_pair):
    after, before = llama_pair
    after.train()  # dropout would draw from the global RNG if the engine left train mode on
    random.seed(1)
    np.random.seed(1)
    torch_state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    sample(TwoModelPair(after, before, tokenizer), PROMPTS, SamplingConfig(alpha=1.0, max_new_tokens=4))
    assert torch.equal(torch_state, torch.get_rng_state())
    assert random.getstate() == py_state
    assert all(np.array_equal(x, y) for x, y in zip(np_state[1:2], np.random.get_state()[1:2], strict=True))
    assert after.training and not before.training, "train/eval flags must be restored"
    after.eval()


def _scripted_pair(tokenizer):
    """Each prompt's last word decides its continuation; rows stop after 1, 3 or never."""
    v = tokenizer.get_vocab()
    script = {
        v["assistant"]: v["hello"],
        v["hello"]: v["how"],
        v["how"]: v["are"],
        v["are"]: v["<|im_end|>"],
    }
    model = BigramLM(len(tokenizer), script, default=v["cat"])
    return TwoModelPair(model, model, tokenizer), v


def test_rows_stop_independently_and_completions_exclude_the_prompt(tokenizer):
    pair, v = _scripted_pair(tokenizer)
    config = SamplingConfig(alpha=1.0, greedy=True, max_new_tokens=6, chat_template=False)
    prompts = [
        "<|im_start|> user hi <|im_end|> <|im_start|> assistant",  # hello how are <|im_end|>
        "red green how",  # are <|im_end|>
        "red green dog",  # cat cat cat ...
    ]
    r = sample(pair, prompts, config)
    assert r[0].token_ids == [v["hello"], v["how"], v["are"], v["<|im_end|>"]]
    assert r[0].stop_reason == STOP_END_OF_TURN and r[0].completion == "hello how are"
    assert r[1].token_ids == [v["are"], v["<|im_end|>"]] and r[1].completion == "are"
    assert r[2].token_ids == [v["cat"]] * 6 and r[2].stop_reason == STOP_MAX_TOKENS
    assert all("user" not in x.completion and "green" not in x.completion for x in r)


def test_stop_strings(tokenizer):
    pair, v = _scripted_pair(tokenizer)
    config = SamplingConfig(alpha=0.0, greedy=True, max_new_tokens=6, chat_template=False, stop_strings=("how",))
    (r,) = sample(pair, ["red assistant"], config)
    assert r.token_ids == [v["hello"], v["how"]] and r.stop_reason == STOP_STRING


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alpha=float("nan")), "alpha"),
        (dict(temperature=0.0), "temperature"),
        (dict(top_p=1.5), "top_p"),
        (dict(max_new_tokens=0), "max_new_tokens"),
    ],
)
def test_bad_sampling_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kwargs)


def test_combine_exact_endpoints_and_impossible_ids():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 50, generator=gen) * 4, torch.randn(3, 50, generator=gen) * 4
    assert torch.equal(combine(a, b, 0.0), a)
    assert torch.equal(combine(a, b, -1.0), b)
    torch.testing.assert_close(combine(a, b, 2.5), a + 2.5 * (a - b))
    inf = float("-inf")
    after = torch.tensor([[0.0, 1.0, inf, 2.0]])
    before = torch.tensor([[1.0, inf, 0.5, 2.0]])
    amp = combine(after, before, 2.0)
    assert amp.tolist() == [[-2.0, inf, inf, 2.0]]
    p = np.exp([-2.0, 2.0]) / np.exp([-2.0, 2.0]).sum()
    q = np.exp([0.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    assert float(kl_divergence(amp, after)[0]) == pytest.approx(float((p * np.log(p / q)).sum()), rel=1e-5)


def test_combine_per_row_alpha_equals_each_alpha_alone():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 300, generator=gen) * 5, torch.randn(6, 300, generator=gen) * 5
    alphas = [0.0, 2.0, 0.25, -1.0, 7.5, 2.0]
    got = combine(a, b, alphas)
    for i, alpha in enumerate(alphas):
        assert torch.equal(got[i], combine(a[i : i + 1], b[i : i + 1], alpha)[0])


def test_kl_of_equal_distributions_is_never_negative():
    """The same distribution written with shifted logits (what a reference equal to the policy can
    give): rounding in <softmax(p), p - q> - lse(p) + lse(q) reads about -4e-6 unclamped."""
    logits = torch.randn(64, 49152, generator=torch.Generator().manual_seed(0)) * 8
    for shift in (0.37, 3.0, 11.1):
        kl = kl_divergence(logits, logits + shift)
        assert (kl >= 0).all() and float(kl.max()) < 1e-4
    assert (kl_divergence(logits, logits.clone()) == 0).all()
