"""A seeded request gives the same rollouts alone and merged with a mix of other requests, in
bfloat16 and float32, and seeded requests from different clients share decode batches.

Driven through the batcher itself (no HTTP): one request alone, then the same request in a burst
with other seeded requests (other seeds, prompts of other lengths, several samples), unseeded
ones and one with other settings. Top-p 0.9 and 64-token answers, so rows stop at different
steps and leave the batch while others go on.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from lda_monitor.config.server import SERVER_DEFAULTS
from lda_monitor.engine.sampling_config import SamplingConfig
from lda_monitor.server.batcher import RequestBatcher, computes_in_float32
from tests.server.helpers import ProbedPair
from tests.tiny import tiny_llama

SETTINGS = SamplingConfig(alpha=1.5, temperature=1.0, top_p=0.9, max_new_tokens=64, seed=0, batch_size=64)
SEEDED = [  # (prompts, seed, samples)
    (["tell me a story about the cat"], 101, 2),
    (["hello", "why is the sky blue ? tell me everything you know about light"], 102, 1),
    (["the dog"], 103, 3),
]


def burst(batcher: RequestBatcher, requests) -> list[list]:
    """Submit ``requests`` (prompts, config, samples, seeded) together; their rollouts' token ids."""
    futures = [batcher.submit(prompts, config, samples, seeded=seeded) for prompts, config, samples, seeded in requests]
    return [[r.token_ids for r in future.result(timeout=120)] for future in futures]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_a_seeded_request_is_the_same_alone_and_merged_with_others(tokenizer, dtype):
    torch.set_num_threads(1)
    pair = ProbedPair(*(tiny_llama(tokenizer, seed=s).to(dtype) for s in (21, 22)), tokenizer)
    batcher = RequestBatcher(pair, max_rows=64, wait_seconds=0.3, seeded_decoding=SERVER_DEFAULTS.seeded_decoding)
    assert computes_in_float32(batcher.seeded_pair)  # bf16: seeded requests decode on a float32 copy
    assert (batcher.seeded_pair is pair) == (dtype == torch.float32)
    batcher.start()
    try:
        seeded = [(prompts, dataclasses.replace(SETTINGS, seed=seed), samples, True)
                  for prompts, seed, samples in SEEDED]
        alone = [burst(batcher, [request])[0] for request in seeded]
        time.sleep(0.1)
        sessions = batcher.seeded_pair.sessions
        others = [(["a question about rain"], dataclasses.replace(SETTINGS, seed=7), 2, False),  # unseeded
                  (["the sun"], dataclasses.replace(SETTINGS, seed=104, temperature=0.7), 1, True)]  # other settings
        mixed = burst(batcher, [others[0], seeded[0], others[1], seeded[1], seeded[2]])
        merged_sessions = batcher.seeded_pair.sessions - sessions
    finally:
        batcher.stop()
    assert [mixed[1], mixed[3], mixed[4]] == alone
    assert [len(a) for a in alone] == [2, 2, 3]
    # On the seeded requests' pair: the three with equal settings shared one decode batch (in float32
    # with the unseeded one too), the one at another temperature had its own.
    assert merged_sessions == 2
