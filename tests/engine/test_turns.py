"""Where a chat rollout ends, and what text it shows: a new turn's start ends it, and completions
carry no special tokens while the records keep their ids (issue: amplified rollouts invented turns)."""

from __future__ import annotations

import pytest

from lda_monitor.engine.chat import (
    encode_rendered,
    end_of_turn_ids,
    render_prompt,
    start_of_turn_ids,
)
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.engine.sampling import STOP_END_OF_TURN, STOP_MAX_TOKENS, SamplingConfig, sample
from tests.tiny import BigramLM


def _pair(tokenizer, script_words, default):
    v = tokenizer.get_vocab()
    script = {v[a]: v[b] for a, b in script_words}
    model = BigramLM(len(tokenizer), script, default=v[default])
    return TwoModelPair(model, model, tokenizer), v


def test_start_of_turn_found_from_the_template(tokenizer):
    v = tokenizer.get_vocab()
    assert start_of_turn_ids(tokenizer) == {v["<|im_start|>"]}
    assert v["<|im_start|>"] not in end_of_turn_ids(tokenizer)


def test_a_new_turn_ends_the_rollout(tokenizer):
    # hello -> <|im_start|> -> user -> how ...: the model skips <|im_end|> and opens a user turn.
    pair, v = _pair(tokenizer, [("assistant", "hello"), ("hello", "<|im_start|>"), ("<|im_start|>", "user"),
                                ("user", "how")], default="cat")
    (r,) = sample(pair, ["what is the capital"], SamplingConfig(alpha=1.0, greedy=True, max_new_tokens=8))
    assert r.token_ids == [v["hello"], v["<|im_start|>"]]
    assert r.stop_reason == STOP_END_OF_TURN
    assert r.completion == "hello"


def test_completion_text_has_no_special_tokens_but_ids_keep_them(tokenizer):
    pair, v = _pair(tokenizer, [("assistant", "hello"), ("hello", "<|im_start|>"), ("<|im_start|>", "<unk>"),
                                ("<unk>", "<|endoftext|>"), ("<|endoftext|>", "red")], default="red")
    config = SamplingConfig(alpha=1.0, greedy=True, max_new_tokens=6, ignore_eos=True)
    (r,) = sample(pair, ["hi"], config)
    assert r.token_ids == [v[w] for w in ("hello", "<|im_start|>", "<unk>", "<|endoftext|>", "red", "red")]
    assert r.stop_reason == STOP_MAX_TOKENS
    assert "<|" not in r.completion and "<unk>" not in r.completion
    assert r.completion.split() == ["hello", "red", "red"]


@pytest.mark.real_model
def test_real_chatml_tokenizer_stops_at_im_start():
    from transformers import AutoTokenizer

    from lda_monitor.engine import embedded

    tok = AutoTokenizer.from_pretrained(embedded.embedded_model_dir())
    start, end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    assert start in start_of_turn_ids(tok) and end not in start_of_turn_ids(tok)
    words = tok("Sure , here", add_special_tokens=False)["input_ids"]
    user = tok("user", add_special_tokens=False)["input_ids"][0]
    last = encode_rendered(tok, render_prompt(tok, "hi"))[-1]
    script = {last: words[0], words[0]: words[1], words[1]: words[2], words[2]: start, start: user}
    model = BigramLM(len(tok), script, default=words[0])
    (r,) = sample(TwoModelPair(model, model, tok), ["hi"], SamplingConfig(alpha=2.0, greedy=True, max_new_tokens=10))
    assert r.token_ids == [*words, start] and r.stop_reason == STOP_END_OF_TURN
    assert r.completion == tok.decode(words) and "<|im_start|>" not in r.completion
