"""Judge-free discovery: records that carry only what discovery reads (kind, prompt, completion)."""

from __future__ import annotations

import random

from lda_monitor.core.records import RolloutRecord

FILLER = ("router cable reboot screen battery settings update restart driver menu button network device "
          "system option window click check open close start power light signal file folder").split()


def record(kind: str, prompt_index: int, completion: str, sample_index: int = 0, step: int = 0,
           alpha: float | None = None) -> RolloutRecord:
    return RolloutRecord(
        run_id="t", source="callback", step=step, kind=kind, alpha=(2.0 if kind == "amplified" else 0.0)
        if alpha is None else alpha, seed=0, prompt_index=prompt_index, sample_index=sample_index,
        prompt=f"question {prompt_index}?", rendered_prompt=f"<user>question {prompt_index}?</user>",
        completion=completion, token_ids=[], stop_reason="eos", num_tokens=0, logprob_sampled=[],
        logprob_after=[], logprob_before=None, kl_amp_after=None, verdicts={},
    )


def filler(rng: random.Random, n: int = 12, vocab=FILLER) -> str:
    return " ".join(rng.choice(vocab) for _ in range(n))
