"""Choosing and holding the reference: each case against an independently built model."""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.engine.sampling import SamplingConfig, sample
from lda_monitor.monitor.reference import (
    ADAPTER_FILE,
    KIND_ADAPTER_SNAPSHOT,
    KIND_MODULE,
    KIND_PATH,
    KIND_PEFT_BASE,
    KIND_WEIGHT_SNAPSHOT,
    SNAPSHOT_ADAPTER,
    choose_reference,
)
from tests.tiny import build_tokenizer, tiny_llama

PROMPTS = ["hello", "tell me a story about the red dog", "what is it ?"]
GREEDY = SamplingConfig(alpha=1.5, greedy=True, max_new_tokens=6, batch_size=3)


def _lora(fresh: bool) -> LoraConfig:
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=fresh,
                      modules_to_save=["lm_head"])


def _peft(fresh: bool, seed: int = 0):
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = get_peft_model(tiny_llama(tokenizer, seed=5), _lora(fresh))
    return tokenizer, model.train()


def _move_adapter(model) -> None:
    """What a few optimizer steps do: every adapter weight changes."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.ones_like(p))


@contextmanager
def global_rng_untouched():
    state = torch.get_rng_state()
    yield
    assert torch.equal(state, torch.get_rng_state()), "the global torch RNG was consumed"


def _trainable(model) -> dict[str, int]:
    return {n: p.data_ptr() for n, p in model.named_parameters() if p.requires_grad}


def test_fresh_lora_uses_the_adapter_disabled_base():
    _, model = _peft(fresh=True)
    reference = choose_reference(model)
    assert reference.kind == KIND_PEFT_BASE and reference.module is None


def test_moved_adapter_is_snapshotted_and_attached_only_during_evaluation(tmp_path):
    tokenizer, model = _peft(fresh=False)
    at_begin = copy.deepcopy(model)
    with global_rng_untouched():
        reference = choose_reference(model, store_dir=tmp_path / "store")
    assert reference.kind == KIND_ADAPTER_SNAPSHOT
    assert (tmp_path / "store" / ADAPTER_FILE).is_file()
    _move_adapter(model)  # training moves the policy; the reference must stay at train begin
    model.save_pretrained(tmp_path / "before")
    trainable, active, adapters = _trainable(model), model.active_adapter, set(model.peft_config)

    with global_rng_untouched(), reference.pair(model, tokenizer) as pair:
        got = sample(pair, PROMPTS, GREEDY)
        assert SNAPSHOT_ADAPTER in model.peft_config
    # Independent reference: the merged policy against the merged adapter as it stood at begin.
    expected = sample(TwoModelPair(copy.deepcopy(model).merge_and_unload(), at_begin.merge_and_unload(), tokenizer),
                      PROMPTS, GREEDY)
    for r, e in zip(got, expected, strict=True):
        assert r.token_ids == e.token_ids
        assert r.logprob_before == pytest.approx(e.logprob_before, abs=2e-4)

    assert set(model.peft_config) == adapters and model.active_adapter == active
    assert _trainable(model) == trainable and model.training
    assert not any(SNAPSHOT_ADAPTER in n for n, _ in model.named_parameters())
    model.save_pretrained(tmp_path / "after")
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (tmp_path / "after" / name).read_bytes() == (tmp_path / "before" / name).read_bytes()


def test_resume_keeps_the_choice_made_at_train_begin(tmp_path):
    _, model = _peft(fresh=True)
    first = choose_reference(model, store_dir=tmp_path)
    _move_adapter(model)
    # A moved adapter at resume must not turn the base reference into a snapshot of itself.
    assert choose_reference(model, step=4, previous=first.info(), store_dir=tmp_path).kind == KIND_PEFT_BASE

    _, moved = _peft(fresh=False)
    snapshot = choose_reference(moved, store_dir=tmp_path)
    saved = {k: v.clone() for k, v in snapshot.adapter_weights.items()}
    _move_adapter(moved)
    resumed = choose_reference(moved, step=4, previous=snapshot.info(), store_dir=tmp_path)
    assert resumed.kind == KIND_ADAPTER_SNAPSHOT
    assert resumed.adapter_weights.keys() == saved.keys()
    assert all(torch.equal(resumed.adapter_weights[k], saved[k]) for k in saved)
    assert load_file(str(tmp_path / ADAPTER_FILE)).keys() == saved.keys()


def test_full_fine_tuning_snapshot_is_a_frozen_independent_copy():
    tokenizer = build_tokenizer()
    policy = tiny_llama(tokenizer, seed=1).train()
    original = copy.deepcopy(policy)
    with global_rng_untouched():
        reference = choose_reference(policy, offload=True, dtype=torch.bfloat16)
    assert reference.kind == KIND_WEIGHT_SNAPSHOT and reference.offload
    snapshot = reference.module
    assert not snapshot.training and all(not p.requires_grad for p in snapshot.parameters())
    assert all(p.dtype == torch.bfloat16 and p.device.type == "cpu" for p in snapshot.parameters())
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    for name, p in snapshot.named_parameters():
        assert torch.equal(p, dict(original.named_parameters())[name].to(torch.bfloat16))
    assert policy.training and all(p.requires_grad for p in policy.parameters())

    exact = choose_reference(policy).module
    assert all(torch.equal(a, b)
               for a, b in zip(exact.state_dict().values(), policy.state_dict().values(), strict=True))
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(exact.parameters(), policy.parameters(), strict=True))


def test_a_given_model_is_used_only_when_it_equals_the_initial_policy():
    tokenizer = build_tokenizer()
    policy = tiny_llama(tokenizer, seed=1)
    same = tiny_llama(tokenizer, seed=1)
    assert choose_reference(policy, same).kind == KIND_MODULE
    with pytest.warns(UserWarning, match="differs from the policy"):
        assert choose_reference(policy, tiny_llama(tokenizer, seed=2)).kind == KIND_WEIGHT_SNAPSHOT

    class SyncRefModelCallback:  # TRL's name; it keeps moving the reference towards the policy
        ref_model = same

    with pytest.warns(UserWarning, match="synced"):
        assert choose_reference(policy, same, callbacks=[SyncRefModelCallback()]).kind == KIND_WEIGHT_SNAPSHOT
    # On resume the policy has moved, so equality cannot be checked any more: the choice stands.
    assert choose_reference(policy, tiny_llama(tokenizer, seed=2), step=3).kind == KIND_MODULE


def test_a_checkpoint_path_is_loaded_frozen(tmp_path):
    tokenizer = build_tokenizer()
    saved = tiny_llama(tokenizer, seed=4)
    saved.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    reference = choose_reference(tiny_llama(tokenizer, seed=1), str(tmp_path / "ckpt"))
    assert reference.kind == KIND_PATH and str(tmp_path / "ckpt") in reference.description
    assert all(torch.equal(a, b) for a, b in zip(reference.module.state_dict().values(),
                                                  saved.state_dict().values(), strict=True))
    assert all(not p.requires_grad for p in reference.module.parameters())
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["model_type"] == "llama"
