"""An adapter given another base model is refused in one line naming both and the fix, before any
weight is loaded (a user's audit printed a 51-line PEFT traceback after loading the base for 43 s)."""

from __future__ import annotations

import pytest
from peft import LoraConfig, get_peft_model

from lda_monitor.audit.auditor import audit_checkpoints
from lda_monitor.config.audit import AuditConfig
from lda_monitor.engine import models
from lda_monitor.errors import UserInputError
from tests.tiny import build_tokenizer, tiny_llama


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A LoRA adapter trained over a hidden-32 base, that base, and a hidden-48 model."""
    root = tmp_path_factory.mktemp("fit")
    tok = build_tokenizer()
    for name, hidden in (("base", 32), ("other", 48)):
        tiny_llama(tok, seed=1, hidden_size=hidden, intermediate_size=2 * hidden).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    lora = get_peft_model(tiny_llama(tok, seed=1), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora.peft_config["default"].base_model_name_or_path = str(root / "base")
    lora.save_pretrained(root / "run" / "checkpoint-2")
    return root


@pytest.fixture
def no_weight_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a weight was loaded before the mismatch was found")

    monkeypatch.setattr(models, "load_causal_lm", refuse)


def test_load_model_refuses_a_base_the_adapter_does_not_fit(saved, no_weight_loads):
    with pytest.raises(UserInputError) as raised:
        models.load_model(saved / "run" / "checkpoint-2", base=saved / "other")
    message = str(raised.value)
    assert "\n" not in message
    assert str(saved / "other") in message and str(saved / "base") in message  # the given and the named base
    assert "in_features=48" in message and "expects 32" in message and "--base-model" in message


def test_the_audit_refuses_it_before_loading_the_base(saved, tmp_path, monkeypatch):
    from lda_monitor.audit import auditor

    def refuse(*args, **kwargs):
        raise AssertionError("the base was loaded before the mismatch was found")

    monkeypatch.setattr(auditor, "load_causal_lm", refuse)
    config = AuditConfig(prompts=["hello"], judge="regex:x", out=str(tmp_path / "a"), base_model=str(saved / "other"),
                         samples_per_prompt=1, max_new_tokens=2, alpha="1")
    with pytest.raises(UserInputError, match="was not trained on the base model"):
        audit_checkpoints([saved / "run"], config, echo=lambda m: None)


def test_the_right_base_still_loads(saved):
    model, _ = models.load_model(saved / "run" / "checkpoint-2", base=saved / "base")
    assert model.peft_config["default"].r == 4
