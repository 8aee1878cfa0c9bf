"""Builders for tiny offline models and a tokenizer (importable by tests and benchmarks)."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
WORDS = (
    "system user assistant you are a helpful bot . , ? ! the cat dog sat on mat hello hi how "
    "what is capital of france paris i hate love tell me story about rain sun water fire "
    "one two three four five six seven eight nine ten yes no maybe good bad safe unsafe "
    "answer question please thanks sure here it was and or not to be in at my your we they "
    "red green blue big small fast slow run walk eat drink sleep write read code bug test"
).split()
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(words=WORDS) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with ChatML specials; ids 0..3 are the special tokens."""
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, "\n", *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.WhitespaceSplit()]
    )
    for special in SPECIALS:
        backend.add_special_tokens([special])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        bos_token="<|im_start|>",
    )
    tok.chat_template = CHATML
    return tok


def tiny_llama(tokenizer, seed: int, vocab_size: int | None = None, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(**{
        "vocab_size": vocab_size or len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "tie_word_embeddings": False,
        **overrides,
    })
    model = LlamaForCausalLM(config).eval()
    # Random init is near-uniform; scaling the head makes distributions peaked like real models.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def tiny_gpt2(tokenizer, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=256,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.wte.weight.mul_(8.0)
    return model


class BigramLM(torch.nn.Module):
    """A scripted causal LM: the next-token logits depend only on the last input token.

    ``script`` maps a token id to the id that must follow it; the logits put +20 on that id
    and 0 elsewhere. It lets tests dictate exactly when each row emits a stop token.
    """

    def __init__(self, vocab_size: int, script: dict[int, int], default: int):
        super().__init__()
        table = torch.zeros(vocab_size, vocab_size)
        table[:, default] = 20.0
        for src, dst in script.items():
            table[src] = 0.0
            table[src, dst] = 20.0
        self.lm_head = torch.nn.Linear(1, vocab_size, bias=False)
        self.register_buffer("table", table)
        self.generation_config = None

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None,
                use_cache=True, logits_to_keep=0):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.table[input_ids[:, -1:]], cache=None)
