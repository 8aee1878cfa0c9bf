"""Sort-free top-p (and the other transforms) against Hugging Face's warpers, bit for bit."""

from __future__ import annotations

import itertools

import pytest
import torch

from lda_monitor.engine.sampling import token_logprob
from lda_monitor.engine.sampling_config import SamplingConfig
from lda_monitor.engine.truncation import Transforms, top_p


def _logits(generator, rows, vocab, scale, kind):
    x = torch.randn(rows, vocab, generator=generator) * scale
    if kind == "bf16-valued":
        x = x.bfloat16().float()  # what a bf16 model's logits look like after the engine's cast
    elif kind == "ties":
        x = (x * 2).round() / 2  # large groups of equal logits, across every boundary
    elif kind == "bf16":
        x = x.bfloat16()
    return x


@pytest.mark.parametrize("kind", ["fp32", "bf16-valued", "ties", "bf16"])
def test_transforms_equal_hugging_face_warpers(kind):
    gen = torch.Generator().manual_seed(0)
    checked = 0
    combos = itertools.product((1.0, 0.7, 1.3), (0, 1, 5, 50), (1.0, 0.05, 0.5, 0.9, 0.95, 0.999), (None, 0.05))
    for (temperature, top_k, p, min_p), vocab in zip(combos, itertools.cycle((7, 300, 4000, 12000)), strict=False):
        x = _logits(gen, 6, vocab, float(torch.rand(1, generator=gen)) * 10 + 0.3, kind)
        config = SamplingConfig(temperature=temperature, top_k=top_k, top_p=p, min_p=min_p)
        want = config.warpers()(None, x)
        got = Transforms(config)(x)
        assert torch.equal(got, want), (temperature, top_k, p, min_p, vocab)
        tokens = torch.randint(vocab, (6,), generator=gen)
        assert torch.equal(token_logprob(got.float(), tokens), token_logprob(want.float(), tokens))
        checked += 1
    assert checked == 144


def test_top_p_equals_the_warper_on_many_random_rows():
    from transformers.generation.logits_process import TopPLogitsWarper

    gen = torch.Generator().manual_seed(1)
    for trial in range(60):
        vocab = (50, 2000, 49152)[trial % 3] if trial < 30 else 300
        x = torch.randn(8, vocab, generator=gen) * (trial % 7 + 0.5)
        for p in (0.3, 0.8, 0.95):
            assert torch.equal(top_p(x, p), TopPLogitsWarper(top_p=p)(None, x))


def test_peaked_rows_never_sort_the_vocabulary(monkeypatch):
    """The point of the module: a nucleus found in the partial top-k needs no full sort, while a
    nucleus wider than every window still comes out right through the warper's own sort."""
    from transformers.generation.logits_process import TopPLogitsWarper

    gen = torch.Generator().manual_seed(2)
    peaked = torch.randn(32, 49152, generator=gen) * 6
    flat = torch.randn(2, 49152, generator=gen) * 0.1
    want_peaked = TopPLogitsWarper(top_p=0.95)(None, peaked)
    want_flat = TopPLogitsWarper(top_p=0.95)(None, flat)
    sorts = []
    real_sort = torch.sort
    monkeypatch.setattr(torch, "sort", lambda *a, **k: sorts.append(a[0].shape) or real_sort(*a, **k))
    assert torch.equal(top_p(peaked, 0.95), want_peaked) and not sorts
    assert torch.equal(top_p(flat, 0.95), want_flat) and sorts == [torch.Size([2, 49152])]


def test_policy_is_the_temperature_only_distribution():
    x = torch.randn(3, 100, generator=torch.Generator().manual_seed(3))
    t = Transforms(SamplingConfig(temperature=0.8, top_p=0.5, top_k=10))
    assert torch.equal(t.temper(x), x / 0.8)
    assert torch.equal(t(x), t.truncate(t.temper(x)))
    greedy = Transforms(SamplingConfig(greedy=True, temperature=0.8, top_p=0.5))
    assert greedy(x) is x and greedy.temper(x) is x


@pytest.mark.real_model
def test_top_p_equals_the_warper_on_real_bf16_logits():
    """SmolLM2's bf16 logits (ties at nucleus boundaries are common) under several temperatures."""
    from transformers.generation.logits_process import TopPLogitsWarper

    from lda_monitor.engine.chat import encode_rendered, render_prompt
    from lda_monitor.engine.embedded import EMBEDDED_NAME
    from lda_monitor.engine.models import load_model
    from lda_monitor.engine.tensors import left_pad, pad_id

    model, tok = load_model(EMBEDDED_NAME, dtype="bfloat16")
    prompts = ["What is the capital of France?", "Write a poem about rain.", "How do I fix a bug?", "Hi"]
    ids, mask, positions = left_pad([encode_rendered(tok, render_prompt(tok, p)) for p in prompts], pad_id(tok))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -3:].float()
    logits = logits.reshape(-1, logits.shape[-1])
    for temperature in (0.5, 0.8, 1.0, 1.5):
        x = logits / temperature
        for p in (0.5, 0.9, 0.95, 0.99):
            assert torch.equal(top_p(x, p), TopPLogitsWarper(top_p=p)(None, x)), (temperature, p)
