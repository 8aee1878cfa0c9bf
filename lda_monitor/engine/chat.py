"""Prompt rendering and the tokens that end an assistant turn.

Both models always receive the same token ids: the prompt is rendered once with the after
model's chat template. Stopping only on EOS lets a chat model write the next user turn, which
inflates flag rates with text the model would never show a user, so the end-of-turn token(s)
of the template are found by rendering a probe conversation and stop every row too. An amplified
model can also skip the end-of-turn token and open a new turn directly; the template's
start-of-turn token(s) therefore end a rollout as well.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UserInputError

Prompt = str | Sequence[dict]
# End-of-turn markers of common chat templates, used when probing the template finds none.
_KNOWN_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")
# Start-of-turn markers of common chat templates, used when probing the template finds none.
_KNOWN_START_OF_TURN = ("<|im_start|>", "<|start_header_id|>", "<start_of_turn>")
_PROBE = "lda-monitor-probe-7f3a"


def render_prompt(tokenizer, prompt: Prompt, *, system: str | None = None, chat_template=True) -> str:
    """Turn a prompt (a string or a list of chat messages) into the text fed to both models."""
    if not chat_template:
        if not isinstance(prompt, str):
            raise UserInputError(
                "a chat-message prompt needs a chat template; drop --no-chat-template "
                "(chat_template=False) or give plain-text prompts"
            )
        return prompt if system is None else f"{system}\n\n{prompt}"
    if not getattr(tokenizer, "chat_template", None):
        raise UserInputError(
            "the tokenizer has no chat template; pass --no-chat-template (chat_template=False) "
            "to feed prompts as raw text"
        )
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system is not None and not (messages and messages[0].get("role") == "system"):
        messages = [{"role": "system", "content": system}, *messages]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_rendered(tokenizer, text: str, *, chat_template=True) -> list[int]:
    """Token ids of a rendered prompt. Templates already insert BOS; raw text gets it added."""
    return tokenizer(text, add_special_tokens=not chat_template)["input_ids"]


def end_of_turn_ids(tokenizer) -> set[int]:
    """Token ids that close an assistant turn in this tokenizer's chat template."""
    ids: set[int] = set()
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}],
                tokenize=False,
            )
        except Exception:  # exotic templates; fall back to known markers
            text = ""
        tail = text.split(_PROBE, 1)[1] if _PROBE in text else ""
        special = _special_ids(tokenizer)
        tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail.strip() else []
        for token_id in tail_ids:
            if token_id in special:
                ids.add(token_id)
                break
    vocab = tokenizer.get_vocab()
    ids.update(vocab[marker] for marker in _KNOWN_END_OF_TURN if marker in vocab)
    return ids


def start_of_turn_ids(tokenizer) -> set[int]:
    """Token ids that open a new turn in this tokenizer's chat template.

    Found as the first special token of the generation prompt (what the template appends to open
    the assistant's turn: ``<|im_start|>`` in ChatML, ``<|start_header_id|>`` in Llama 3), plus
    the known markers present in the vocabulary.
    """
    ids: set[int] = set()
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": _PROBE}]
        try:
            closed = tokenizer.apply_chat_template(messages, tokenize=False)
            opened = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - exotic templates; fall back to known markers
            closed = opened = ""
        prompt = opened[len(closed):] if opened.startswith(closed) else ""
        special = _special_ids(tokenizer) - end_of_turn_ids(tokenizer)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt.strip() else []
        ids.update([i for i in prompt_ids if i in special][:1])
    vocab = tokenizer.get_vocab()
    ids.update(vocab[marker] for marker in _KNOWN_START_OF_TURN if marker in vocab)
    return ids


def _special_ids(tokenizer) -> set[int]:
    return set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))


def eos_ids(tokenizer, generation_config=None) -> set[int]:
    """EOS ids from the tokenizer and the model's generation config."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return ids
