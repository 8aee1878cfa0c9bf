"""Shared fixtures: tiny random models and an offline tokenizer, built in milliseconds.

Nothing here touches the network: the tokenizer is a word-level vocabulary written in code with
a ChatML template, and the models are randomly initialised from small configs.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.tiny import build_tokenizer, tiny_gpt2, tiny_llama  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep converted-model caches out of the user's home, but share the embedded model's."""
    if "LDA_MONITOR_CACHE" not in os.environ:
        monkeypatch.setenv("LDA_MONITOR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _real_model_only_where_marked(request, monkeypatch):
    """Loading the embedded model fails in a test not marked ``real_model``, so the filter
    ``-m "not real_model"`` really leaves out every test that loads it (subprocesses excepted)."""
    if request.node.get_closest_marker("real_model"):
        return
    from lda_monitor.engine import embedded, models

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{request.node.nodeid} loads the embedded model: mark it @pytest.mark.real_model")

    monkeypatch.setattr(embedded, "embedded_model_dir", refuse)
    monkeypatch.setattr(models, "embedded_model_dir", refuse)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def llama_pair(tokenizer):
    """(after, before) tiny Llama models (RoPE) in float32 with different weights."""
    return tiny_llama(tokenizer, seed=1), tiny_llama(tokenizer, seed=2)


@pytest.fixture(scope="session")
def gpt2_pair(tokenizer):
    """(after, before) tiny GPT-2 models (learned absolute positions)."""
    return tiny_gpt2(tokenizer, seed=1), tiny_gpt2(tokenizer, seed=2)


@pytest.fixture
def rng_guard():
    """Asserts the test body did not touch the global torch RNG."""
    state = torch.get_rng_state()
    yield
    assert torch.equal(state, torch.get_rng_state()), "global torch RNG was consumed"


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """An offline W&B session whose runs land in ``tmp_path/wandb``.

    wandb reads ``WANDB_DIR`` once, when its process-wide singleton is set up, so a run started
    by an earlier test would send every later run to the first one's directory (or the cwd);
    tearing the singleton down before and after each test makes the setting take effect.
    """
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    wandb.teardown()
    yield tmp_path
    wandb.finish()
    wandb.teardown()
