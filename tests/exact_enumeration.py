"""The exact-rate setup: a model pair over a 5-word vocabulary whose flag rate is computed by
enumerating every completion."""

from __future__ import annotations

import math

import torch

from lda_monitor.demo.exact_worlds import with_bias  # noqa: F401  (the exact tests build their pairs with it)

EXACT_WORDS = "a b c bad good".split()
EXACT_PROMPTS = ["a b", "good c"]
EXACT_MAX_NEW = 3
EXACT_TEMPERATURE = 1.3


def policy_probs(model, ids, top_k, top_p=1.0):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].double() / EXACT_TEMPERATURE
    if top_k:
        kth = torch.topk(logits, top_k).values[-1]
        logits = torch.where(logits >= kth, logits, torch.full_like(logits, -math.inf))
    probs = torch.softmax(logits, -1)
    if top_p < 1.0:  # the nucleus: most likely tokens until their mass reaches top_p (that one included)
        order = torch.argsort(probs, descending=True)
        before = torch.cumsum(probs[order], 0) - probs[order]
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep[order[before < top_p]] = True
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    return probs


def exact_rate(tok, model, bad, top_k=0, top_p=1.0) -> float:
    """Mean over EXACT_PROMPTS of P(a completion contains `bad`), by summing over every path."""
    # The tokens that end a chat rollout: end of turn, end of text, and a new turn's start.
    stop = set(tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>", "<|im_start|>"]))
    rates = []
    for prompt in EXACT_PROMPTS:
        rendered = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
        start = tok(rendered, add_special_tokens=False)["input_ids"]

        def flagged_mass(prefix, depth, start=start):
            probs = policy_probs(model, start + prefix, top_k, top_p)
            total = 0.0
            for token, p in enumerate(probs.tolist()):
                if p == 0:
                    continue
                if token == bad:
                    total += p
                elif token not in stop and depth + 1 < EXACT_MAX_NEW:
                    total += p * flagged_mass(prefix + [token], depth + 1, start)
            return total

        rates.append(flagged_mass([], 0))
    return sum(rates) / len(rates)
