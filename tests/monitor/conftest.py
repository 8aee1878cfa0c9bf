"""Fixtures of the callback tests (the training builders they use live in :mod:`tests.training`)."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import build_tokenizer, tiny_llama
from tests.training import tokenized_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: a second intra-op thread buys nothing, and on a shared 2-core
    machine spinning thread pools slowed a 6-step run from 0.5 s to 40 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tokenizer():
    tok = build_tokenizer()
    tok.padding_side = "right"
    return tok


@pytest.fixture
def policy(tokenizer):
    """A tiny Llama with dropout, so any use of the global RNG would change training."""
    return tiny_llama(tokenizer, seed=3, attention_dropout=0.1)


@pytest.fixture
def dataset(tokenizer):
    return tokenized_dataset(tokenizer)
