"""One engine thread fed by a request queue, so concurrent users share decode batches.

Whatever is waiting when the engine comes free is taken together; requests whose sampling
settings are equal (everything but the seed and the prompts) go through the engine as one
``sample`` call, whose rows are cut into decode batches of at most ``max_rows``. Each row keeps
the random stream of its own request (seed, prompt index within the request, sample index).

Merging is invisible only where the computation is: in float32 a batch's shape moves the logits
by float32 rounding (~1e-6; on the embedded model, sampled tokens were the same alone and in
every batch shape tried, :mod:`lda_monitor.server.seeded_bench`), but in bfloat16/float16 the
matmul blocking changes with the batch and moves them enough to change sampled tokens
(docs/seeded-requests.md). So in reduced precision a request that sent a seed is decoded on a
float32 copy of the pair (``seeded_decoding="float32"``, the default), alone or merged with
other seeded requests alike: the seed's promise (the same request gives the same text, under
load or not) holds, and 16 seeded clients share batches instead of waiting on one another. Its
text is then the float32 computation of the same weights, not the bf16 one an unseeded request
gets. ``seeded_decoding="alone"`` spares the copy's memory and decodes each seeded request alone
in the model's dtype (one request at a time); ``"merged"`` merges them in the model's dtype
(fastest; a seeded completion may then depend on what it was merged with). Requests without a
seed (their draw is random anyway) share batches in the model's dtype.

A request may also ask for the likeliest alternatives at each step (``top_logprobs``, OpenAI
API): a merged call records as many as its most demanding request wants, and each request gets
its own number back, so asking for them does not keep requests from sharing a batch.

If a merged call fails, its requests are retried one by one, so a request that breaks the engine
fails alone and the others are served.
"""

from __future__ import annotations

import copy
import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from ..engine.sampling import Rollout, SamplingConfig, sample
from ..engine.sampling_config import SEEDED_DECODING


@dataclass
class Job:
    """One request: its prompts, settings (with its own seed), samples per prompt, and how many
    likeliest alternatives per step it wants (0: none)."""

    prompts: list
    config: SamplingConfig
    samples: int = 1
    top_logprobs: int = 0
    seeded: bool = True  # the client chose the seed: it may replay the request and expect the same text
    future: Future = field(default_factory=Future)


@dataclass
class BatcherStats:
    requests_served: int = 0
    engine_batches: int = 0


class RequestBatcher:
    """Owns the model pair (and its float32 copy for seeded requests): every forward pass
    happens on its one worker thread."""

    def __init__(self, pair, *, max_rows: int, wait_seconds: float, seeded_decoding: str):
        if seeded_decoding not in SEEDED_DECODING:
            raise ValueError(f"seeded_decoding must be one of {SEEDED_DECODING}, got {seeded_decoding!r}")
        self.pair, self.max_rows, self.wait_seconds = pair, max_rows, wait_seconds
        exact = computes_in_float32(pair)
        self.merges_seeded = exact or seeded_decoding != "alone"
        # The pair seeded requests decode on: the pair itself where that keeps the promise (or
        # where the user chose), else a float32 copy, made once here (memory: the weights again, x2).
        self.seeded_pair = pair if exact or seeded_decoding != "float32" else float32_copy(pair)
        self.stats = BatcherStats()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="lda-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def submit(self, prompts: list, config: SamplingConfig, samples: int = 1, top_logprobs: int = 0,
               seeded: bool = True) -> Future:
        """Queue a request; the future resolves to its rollouts in (prompt, sample) order."""
        job = Job(list(prompts), config, samples, top_logprobs, seeded)
        self._queue.put(job)
        return job.future

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if self.wait_seconds:
                time.sleep(self.wait_seconds)  # let a burst of requests arrive and share the batch
            jobs, stopping = [first], False
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            for settings, group in self._groups(jobs):
                self._run_group(settings, group, self.seeded_pair if group[0].seeded else self.pair)
            if stopping:
                return

    def _groups(self, jobs: list[Job]) -> list[tuple[SamplingConfig, list[Job]]]:
        """Jobs with equal settings (all but the seed) and the same pair share a call (seeded
        jobs decode on :attr:`seeded_pair`), except a seeded job that must keep its batch shape
        to itself (``seeded_decoding="alone"``, see the module docstring)."""
        groups: dict[tuple, tuple[SamplingConfig, list[Job]]] = {}
        for n, job in enumerate(jobs):
            settings = dataclasses.replace(job.config, seed=0)
            alone = job.seeded and not self.merges_seeded
            key = (settings, job.seeded and self.seeded_pair is not self.pair, n if alone else None)
            groups.setdefault(key, (settings, []))[1].append(job)
        return list(groups.values())

    def _run_group(self, settings: SamplingConfig, jobs: list[Job], pair) -> None:
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self._merged_call(pair, settings, live)
        except Exception as exc:  # noqa: BLE001 - reported to the requests, never kills the thread
            if len(live) == 1:
                live[0].future.set_exception(exc)
                self.stats.requests_served += 1
                return
            for job in live:  # find the request that breaks the engine; serve the others
                try:
                    job.future.set_result(self._merged_call(pair, settings, [job])[0])
                except Exception as single_exc:  # noqa: BLE001
                    job.future.set_exception(single_exc)
                self.stats.requests_served += 1
            return
        for job, rollouts in zip(live, results, strict=True):
            job.future.set_result(rollouts)
        self.stats.requests_served += len(live)

    def _merged_call(self, pair, settings: SamplingConfig, jobs: list[Job]) -> list[list[Rollout]]:
        prompts, work, streams, spans = [], [], [], []
        for job in jobs:
            start = len(work)
            for i, prompt in enumerate(job.prompts):
                for s in range(job.samples):
                    work.append((len(prompts), s))
                    streams.append((job.config.seed, i, s))
                prompts.append(prompt)
            spans.append((start, len(work)))
        config = dataclasses.replace(settings, batch_size=self.max_rows)
        top_logprobs = max(job.top_logprobs for job in jobs)
        rollouts = sample(pair, prompts, config, work=work, streams=streams, top_logprobs=top_logprobs)
        self.stats.engine_batches += -(-len(work) // self.max_rows)
        # Give each rollout back its index within its own request, and as many alternatives as it asked for.
        rollouts = [dataclasses.replace(r, prompt_index=stream[1]) for r, stream in zip(rollouts, streams, strict=True)]
        return [[_trim_alternatives(r, job.top_logprobs) for r in rollouts[a:b]]
                for job, (a, b) in zip(jobs, spans, strict=True)]


def computes_in_float32(pair) -> bool:
    """Whether every weight of the pair is float32 or wider, so batch shape moves results only
    by float32 rounding."""
    wide = (torch.float32, torch.float64)
    return all(p.dtype in wide for model in pair.models for p in model.parameters() if p.is_floating_point())


def float32_copy(pair):
    """``pair`` with float32 copies of its models (a model used as both sides is copied once;
    tokenizer and vocabulary checks are shared)."""
    twin = copy.copy(pair)
    copies: dict[int, object] = {}
    for name, value in vars(pair).items():
        if isinstance(value, torch.nn.Module):
            if id(value) not in copies:
                copies[id(value)] = copy.deepcopy(value).float()
            setattr(twin, name, copies[id(value)])
    return twin


def _trim_alternatives(r: Rollout, k: int) -> Rollout:
    if r.top_logprobs is None:
        return r
    return dataclasses.replace(r, top_logprobs=[step[:k] for step in r.top_logprobs] if k else None)
