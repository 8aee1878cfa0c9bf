"""Seeded requests reproduce under concurrency even when batch shape moves the logits.

In bfloat16 the matmul blocking changes with the batch, so a row's logits depend on how many rows
it is decoded with; in float32 only by rounding (~1e-6). The pair here makes that dependence
large and certain in reduced precision only: every bf16 forward adds a fixed perturbation chosen
by the batch's row count. Merging seeded requests in bf16 then changes their completions (shown
with ``seeded_decoding="merged"``); the default decodes them on a float32 copy, merged, and must
give each the text it gets alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tests.server.helpers import ProbedPair, start_server
from tests.tiny import tiny_llama

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from lda_monitor.server import create_app  # noqa: E402
from lda_monitor.server.batcher import computes_in_float32  # noqa: E402

WORDS = ["cat", "dog", "rain", "sun"]


class BatchShapeDependentPair(ProbedPair):
    """A pair whose logits shift with the number of rows in the batch when its weights are bf16
    (bf16's effect, magnified); a float32 copy of it computes without the shift."""

    def open(self, need_before=True):
        session = super().open(need_before)
        if computes_in_float32(self):
            return session
        forward = session.forward

        def shifted(input_ids, attention_mask, position_ids):
            a, b = forward(input_ids, attention_mask, position_ids)
            shift = torch.randn(a.shape[-1], generator=torch.Generator().manual_seed(input_ids.shape[0])) * 2.0
            return a + shift, b

        session.forward = shifted
        return session


def serve(tokenizer, **options):
    after, before = (tiny_llama(tokenizer, seed=s).to(torch.bfloat16) for s in (11, 12))
    pair = BatchShapeDependentPair(after, before, tokenizer)
    app = create_app(pair, model_after="a", model_before="b", max_rows=32, batch_wait_seconds=0.05, **options)
    server, thread, url = start_server(app)
    return Sessions(pair, app.state.lda.batcher.seeded_pair), server, thread, url


class Sessions:
    """Decode batches on the served pair and on its float32 copy for seeded requests, if any."""

    def __init__(self, pair, seeded_pair):
        self.pairs = [pair] if seeded_pair is pair else [pair, seeded_pair]

    @property
    def sessions(self) -> int:
        return sum(p.sessions for p in self.pairs)


def bodies(seeded: bool) -> list[dict]:
    return [{"model": "lda", "messages": [{"role": "user", "content": f"tell me a story about the {w}"}],
             "max_tokens": 16, **({"seed": 100 + i} if seeded else {})} for i, w in enumerate(WORDS * 4)]


def sequential_and_concurrent(pair, url, requests):
    """Texts sent one by one, texts sent by 16 clients at once, and the engine batches each took."""
    def text(client, body):
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    with httpx.Client(base_url=url, timeout=60) as client:
        start = pair.sessions
        sequential = [text(client, b) for b in requests]
        seq_batches, start = pair.sessions - start, pair.sessions
        with ThreadPoolExecutor(16) as pool:
            concurrent = list(pool.map(lambda b: text(client, b), requests))
    return sequential, concurrent, seq_batches, pair.sessions - start


def test_the_pair_is_recognised_as_reduced_precision(tokenizer):
    bf16 = BatchShapeDependentPair(*(tiny_llama(tokenizer, seed=s).to(torch.bfloat16) for s in (1, 2)), tokenizer)
    fp32 = ProbedPair(tiny_llama(tokenizer, seed=1), tiny_llama(tokenizer, seed=2), tokenizer)
    assert not computes_in_float32(bf16) and computes_in_float32(fp32)


@pytest.mark.parametrize("seeded_decoding", ["float32", "alone", "merged"])
def test_16_concurrent_seeded_clients_equal_their_sequential_run_in_bf16(tokenizer, seeded_decoding):
    torch.set_num_threads(1)
    sessions, server, thread, url = serve(tokenizer, seeded_decoding=seeded_decoding)
    try:
        sequential, concurrent, seq_batches, con_batches = sequential_and_concurrent(sessions, url,
                                                                                     bodies(seeded=True))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert seq_batches == 16
    if seeded_decoding == "merged":  # shares batches in bf16, and the shift then changes completions
        assert con_batches < 16 and concurrent != sequential
    elif seeded_decoding == "alone":  # one batch per request: identical, and no faster than one by one
        assert con_batches == 16 and concurrent == sequential
    else:  # the default: merged on the float32 copy, and identical
        assert con_batches < 16 and concurrent == sequential


def test_unseeded_requests_still_share_batches_in_bf16(tokenizer):
    torch.set_num_threads(1)
    pair, server, thread, url = serve(tokenizer)
    try:
        _, _, seq_batches, con_batches = sequential_and_concurrent(pair, url, bodies(seeded=False))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert seq_batches == 16 and con_batches < 16
