"""Worlds whose natural rate is known exactly: tiny random models over a 10-token vocabulary and
answers of at most 3 tokens, so every completion's probability under the policy can be summed.

Each world is a policy (a random Llama with an output bias on the token ``bad``), a reference (the
same with a lower bias, so amplification raises ``bad``), prompts, and a judge: ``bad`` anywhere in
the answer, counted only on the prompts of category ``hot`` (a behaviour tied to some prompts, as a
trigger-conditioned backdoor is). The bias is set by bisection so the suite's exact rate is the
world's target. Worlds (:data:`WORLDS`):

* ``concentrated``: 20 prompts, the behaviour on 4 of them (rate ~1% over the suite, ~5% there);
* ``uniform``: the same 20 prompts, all of them hot (~1%; the random model's prompts differ a little);
* ``short``: the phrase is the whole answer (1 token), all prompts hot (~1%).

The exact rate is computed here by breadth-first enumeration with the model's full forward (no
cache), independent of the engine's decode loop.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

WORDS = ["a", "b", "c", "d", "good", "bad"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PATTERN = "bad"


@dataclass(frozen=True)
class World:
    name: str
    prompts: int
    hot: int  # prompts with the behaviour (the first ``hot``)
    max_new_tokens: int
    rate: float  # the suite's exact rate the bias is tuned to
    what: str


WORLDS = {
    "concentrated": World("concentrated", 20, 4, 3, 0.01, "behaviour on 4 of 20 prompts, 3-token answers"),
    "uniform": World("uniform", 20, 20, 3, 0.01, "behaviour on every prompt, 3-token answers"),
    "short": World("short", 20, 20, 1, 0.01, "the phrase is the whole (1-token) answer"),
}


def tokenizer():
    """A word-level tokenizer with ChatML specials (ids 0-3 the specials, then a newline, then WORDS)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*SPECIALS, "\n", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.WhitespaceSplit()])
    backend.add_special_tokens(SPECIALS)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  unk_token="<unk>", bos_token="<|im_start|>")
    tok.chat_template = CHATML
    return tok


def prompt_items(world: World) -> list[dict]:
    """``world.prompts`` distinct prompts of two words (not ``bad``); the first ``hot`` are hot."""
    pairs = [" ".join(p) for p in itertools.product(WORDS[:-1], repeat=2)][: world.prompts]
    return [{"prompt": p, "category": "hot" if i < world.hot else "cold", "id": f"p{i}"} for i, p in enumerate(pairs)]


def judge():
    """``bad`` in the answer, on hot prompts only; a monotone pattern judge (decides where it matches)."""
    from ..judges.base import Verdict
    from ..judges.regex import RegexJudge

    class HotPromptJudge(RegexJudge):
        def judge(self, prompts, completions, metadata):
            verdicts = super().judge(prompts, completions, metadata)
            return [v if m.get("category") == "hot" else Verdict(False, 0.0, "cold prompt")
                    for v, m in zip(verdicts, metadata, strict=True)]

    return HotPromptJudge(PATTERN, name="bad")


def with_bias(model, token: int, bias: float):
    """``model`` with an output-layer bias of ``bias`` on ``token`` alone."""
    import torch

    model = copy.deepcopy(model)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[token] = bias
    model.lm_head = head
    return model.eval()


def prompt_rates(tok, model, world: World, temperature: float) -> list[float]:
    """Each prompt's exact P(answer contains ``bad``) under the policy (0 on cold prompts)."""
    import torch

    bad = tok.convert_tokens_to_ids(PATTERN)
    stop = set(tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>", "<|im_start|>"]))
    rates = []
    for item in prompt_items(world):
        if item["category"] != "hot":
            rates.append(0.0)
            continue
        start = tok(tok.apply_chat_template([{"role": "user", "content": item["prompt"]}], tokenize=False,
                                            add_generation_prompt=True), add_special_tokens=False)["input_ids"]
        live, flagged = [([], 1.0)], 0.0  # unfinished, unflagged prefixes and their probabilities
        for _ in range(world.max_new_tokens):
            with torch.no_grad():
                logits = model(torch.tensor([start + p for p, _ in live])).logits[:, -1].double()
            probs = torch.softmax(logits / temperature, -1).tolist()
            nxt = []
            for (prefix, mass), row in zip(live, probs, strict=True):
                flagged += mass * row[bad]
                nxt += [(prefix + [t], mass * q) for t, q in enumerate(row) if t != bad and t not in stop and q > 0]
            live = nxt
        rates.append(flagged)
    return rates


def build(world: World, *, temperature: float = 1.0, amplify: float = 1.5, seed: int = 0):
    """(tokenizer, policy, reference, per-prompt exact rates) with the policy's bias on ``bad`` set by
    bisection so the suite's exact rate is ``world.rate``; the reference's bias is ``amplify`` lower."""
    import torch

    from .gpu_check import small_llama

    tok = tokenizer()
    base = small_llama(tok, seed, tiny=True, dtype=torch.float32, device="cpu")
    bad = tok.convert_tokens_to_ids(PATTERN)
    lo, hi = -12.0, 6.0
    for _ in range(30):
        mid = (lo + hi) / 2
        rate = sum(prompt_rates(tok, with_bias(base, bad, mid), world, temperature)) / world.prompts
        lo, hi = (mid, hi) if rate < world.rate else (lo, mid)
    policy = with_bias(base, bad, (lo + hi) / 2)
    return tok, policy, with_bias(base, bad, (lo + hi) / 2 - amplify), prompt_rates(tok, policy, world, temperature)
