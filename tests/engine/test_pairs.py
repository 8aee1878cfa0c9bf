"""Logit sources: PEFT strategies against separate models, vocabulary alignment."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from lda_monitor.engine.pairs import PeftPair, TwoModelPair, make_pair
from lda_monitor.engine.sampling import SamplingConfig, sample
from lda_monitor.engine.vocab import check_compatibility
from lda_monitor.errors import IncompatibleTokenizersError
from tests.tiny import WORDS, build_tokenizer, tiny_llama

PROMPTS = ["hello", "tell me a story about the red dog and the cat", "what is it ?"]
GREEDY = SamplingConfig(alpha=1.5, greedy=True, max_new_tokens=8, batch_size=3)
SAMPLED = SamplingConfig(alpha=1.5, max_new_tokens=8, batch_size=3, seed=2, temperature=0.8)


def _lora(model, seed):
    torch.manual_seed(seed)
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)


@pytest.fixture(scope="module")
def peft_setup():
    """A base model, a PEFT model with an active adapter and a frozen 'ref' adapter, and the
    equivalent separate models built by merging copies (the independent reference)."""
    tokenizer = build_tokenizer()
    base = tiny_llama(tokenizer, seed=7)
    base_copy = copy.deepcopy(base)
    peft_model = get_peft_model(copy.deepcopy(base), _lora(base, 1))
    merged_after = copy.deepcopy(peft_model).merge_and_unload()
    ref_model = get_peft_model(copy.deepcopy(base), _lora(base, 2))
    merged_ref = copy.deepcopy(ref_model).merge_and_unload()
    peft_model.add_adapter("ref", _lora(base, 2))
    peft_model.base_model.model.load_state_dict(
        {k.replace(".default.", ".ref."): v for k, v in ref_model.base_model.model.state_dict().items()
         if "lora_" in k},
        strict=False,
    )
    peft_model.set_adapter("default")
    return tokenizer, peft_model, merged_after, base_copy, merged_ref


def _assert_same(rollouts, reference):
    for r, ref in zip(rollouts, reference, strict=True):
        assert r.token_ids == ref.token_ids
        np.testing.assert_allclose(r.logprob_sampled, ref.logprob_sampled, atol=2e-4)
        np.testing.assert_allclose(r.logprob_before, ref.logprob_before, atol=2e-4)


@pytest.mark.parametrize("strategy", ["doubled", "two-pass"])
@pytest.mark.parametrize("config", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_peft_strategies_equal_two_separate_models(peft_setup, strategy, config):
    tokenizer, peft_model, merged_after, base_copy, _ = peft_setup
    reference = sample(TwoModelPair(merged_after, base_copy, tokenizer), PROMPTS, config)
    got = sample(PeftPair(peft_model, tokenizer, strategy=strategy), PROMPTS, config)
    _assert_same(got, reference)


@pytest.mark.parametrize("strategy", ["doubled", "two-pass"])
def test_named_frozen_adapter_as_reference(peft_setup, strategy):
    tokenizer, peft_model, merged_after, _, merged_ref = peft_setup
    reference = sample(TwoModelPair(merged_after, merged_ref, tokenizer), PROMPTS, SAMPLED)
    got = sample(PeftPair(peft_model, tokenizer, before_adapter="ref", strategy=strategy), PROMPTS, SAMPLED)
    _assert_same(got, reference)
    assert peft_model.active_adapter == "default"


def test_peft_pair_leaves_adapters_and_modes_alone(peft_setup):
    tokenizer, peft_model, *_ = peft_setup
    peft_model.train()
    before = {k: v.clone() for k, v in peft_model.state_dict().items()}
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    sample(PeftPair(peft_model, tokenizer), PROMPTS, SAMPLED)
    assert peft_model.training
    assert {n for n, p in peft_model.named_parameters() if p.requires_grad} == trainable
    assert all(torch.equal(v, peft_model.state_dict()[k]) for k, v in before.items())
    peft_model.eval()


def test_make_pair_and_bad_options(peft_setup, tokenizer, llama_pair):
    tok, peft_model, *_ = peft_setup
    assert isinstance(make_pair(peft_model, tok), PeftPair)
    assert isinstance(make_pair(llama_pair[0], tokenizer, llama_pair[1]), TwoModelPair)
    with pytest.raises(ValueError, match="before model is needed"):
        make_pair(llama_pair[0], tokenizer)
    with pytest.raises(ValueError, match="not loaded"):
        PeftPair(peft_model, tok, before_adapter="nope")
    with pytest.raises(ValueError, match="strategy"):
        PeftPair(peft_model, tok, strategy="fast")


def test_padded_vocab_width_is_aligned(tokenizer):
    """A before model with 32 padded output rows: those ids are never sampled, and the
    numbers equal a reference that slices the padded logits off by hand."""
    after = tiny_llama(tokenizer, seed=1)
    padded = tiny_llama(tokenizer, seed=2, vocab_size=len(tokenizer) + 32)
    with torch.no_grad():
        padded.lm_head.weight[len(tokenizer):] = 50.0  # padding rows would dominate if combined
    pair = TwoModelPair(after, padded, tokenizer)
    assert pair.shared_vocab == len(tokenizer)
    rollouts = sample(pair, PROMPTS, SamplingConfig(alpha=2.0, max_new_tokens=6, seed=1))
    assert all(t < len(tokenizer) for r in rollouts for t in r.token_ids)

    class Sliced(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.generation_config = inner.generation_config

        def get_output_embeddings(self):
            return torch.nn.Linear(1, len(tokenizer), bias=False)

        def forward(self, **kw):
            out = self.inner(**kw)
            out.logits = out.logits[..., : len(tokenizer)]
            return out

    sliced = Sliced(padded)
    sliced.forward.__func__.__signature__ = __import__("inspect").signature(padded.forward)
    reference = sample(TwoModelPair(after, sliced, tokenizer), PROMPTS,
                       SamplingConfig(alpha=2.0, max_new_tokens=6, seed=1))
    _assert_same(rollouts, reference)


def test_incompatible_tokenizers_are_rejected_with_examples(tokenizer, llama_pair):
    swapped = list(WORDS)
    i, j = swapped.index("cat"), swapped.index("dog")
    swapped[i], swapped[j] = swapped[j], swapped[i]
    other = build_tokenizer(swapped)
    report = check_compatibility(tokenizer, other)
    assert not report.compatible and not report.vocabs_match
    with pytest.raises(IncompatibleTokenizersError, match=r"'cat' vs 'dog'"):
        TwoModelPair(llama_pair[0], llama_pair[1], tokenizer, other)


def test_added_tokens_share_the_common_range(tokenizer):
    extended = build_tokenizer()
    extended.add_tokens(["<tool>"])
    report = check_compatibility(tokenizer, extended)
    assert report.compatible and not report.vocabs_match
    assert report.shared_vocab == len(tokenizer) == report.vocab_size_after
    assert report.vocab_size_before == len(tokenizer) + 1
    assert "differ" in report.warning
    same = check_compatibility(tokenizer, build_tokenizer())
    assert same.compatible and same.vocabs_match and same.warning is None


@pytest.mark.parametrize("strategy", ["doubled", "two-pass"])
def test_prompt_prefilled_once_for_many_samples_with_early_stops(peft_setup, strategy):
    """A prompt's prefill copied to its samples, rows then stopping at different steps: the
    same rollouts as decoding each sample alone (the doubled cache must track its row count)."""
    tokenizer, peft_model, *_ = peft_setup
    pair = PeftPair(peft_model, tokenizer, strategy=strategy)
    together = sample(pair, PROMPTS, SamplingConfig(**{**SAMPLED.__dict__, "batch_size": 9}), samples_per_prompt=3)
    alone = sample(pair, PROMPTS, SamplingConfig(**{**SAMPLED.__dict__, "batch_size": 1}), samples_per_prompt=3)
    assert len({len(r.token_ids) for r in together}) > 1  # rows really stop at different steps
    _assert_same(together, alone)
