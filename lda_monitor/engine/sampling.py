"""The amplified decode loop.

At every step each live row samples from

    logits_amp = logits_after + alpha * (logits_after - logits_before)

computed in float32 as ``(1 + alpha) * after - alpha * before`` so that alpha = 0 is exactly the
after model and alpha = -1 exactly the before model. Pure torch + transformers: this module knows
nothing of trainers, judges or logging.

Correctness points other LDA loops get wrong, each covered by a test:

* left padding with explicit ``position_ids = cumsum(mask) - 1`` at prefill and every step
  (the forward does not derive them from the mask);
* after prefill only the newly sampled token is fed (no token twice);
* every row stops on EOS, the chat template's end-of-turn token *and* its start-of-turn token (an
  amplified model may open the next turn without closing its own), finished rows leave the
  batch, and completions are decoded from generated ids only, without special tokens (the text
  a user would see; the ids keep them);
* randomness comes from one private stream per rollout, seeded by (seed, prompt index, sample
  index): never the global RNG, and no draw depends on batch size or composition. In float32
  that makes a rollout independent of the batch it is decoded in (same tokens; a PEFT mixed-
  adapter forward may move log-probs by ~1e-6). In bfloat16 the model's own logits change with
  the batch's shape (matmul blocking): the same work in the same batches reproduces, but a
  rollout decoded in another batch is an equally valid draw that can diverge after a near-tie;
  only its distribution is guaranteed across batch shapes.

Sampling is inverse-CDF (one uniform per row per step, ``searchsorted`` on the cumulative
probabilities): the same distribution as ``torch.multinomial`` at a fraction of the cost on CPU,
and it makes per-rollout streams cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .chat import encode_rendered, end_of_turn_ids, eos_ids, render_prompt, start_of_turn_ids
from .pairs import LogitPair
from .sampling_config import SamplingConfig
from .tensors import left_pad, pad_id
from .truncation import Transforms

STOP_END_OF_TURN = "end_of_turn"
STOP_EOS = "eos"
STOP_STRING = "stop_string"
STOP_MAX_TOKENS = "max_new_tokens"
STOP_DECIDED = "decided"  # the caller's stop hook: the rollout's verdict can no longer change


@dataclass
class Rollout:
    """One sampled completion and the per-token numbers later metrics are built on.

    Log-probs are of the sampled tokens under (a) the distribution actually sampled from,
    (b) the after model with the same transforms at alpha 0, (c) the before model with the same
    transforms (``None`` when the before forward was skipped, alpha 0). Under greedy decoding they
    are the untransformed temperature-1 distributions. ``logprob_policy`` is (b) without the
    truncation (top-k / top-p / min-p): the policy at the sampling temperature, finite for every
    token the model can emit, so the mean NLL of amplified text under it (``lda/coherence``)
    stays finite when amplification leaves the policy's nucleus. ``kl_amp_after`` is the mean over the
    rollout's tokens of KL(amplified || after) on the untransformed distributions: the
    divergence the amplification itself introduces, whatever the sampling knobs;
    ``kl_per_token`` holds the per-step values it averages. ``top_logprobs`` (only when
    ``sample(..., top_logprobs=N)`` asks) lists at each step the N likeliest ids and their
    log-probs under the distribution sampled from, as the OpenAI API reports them.
    ``logprob_at`` (filled when :func:`sample` gets ``score_alphas``) maps each scored alpha to the
    sampled tokens' log-probs under the sampler *as it would run at that alpha* (same transforms),
    so a rollout's sequence density under every proposal of an evaluation is known exactly and
    importance weights need no extra forward (:mod:`lda_monitor.core.natural_rate`). The target of
    those weights, the policy as the user samples it, is ``logprob_after``.
    The stop token (EOS / end-of-turn / start-of-turn) is part of ``token_ids`` and the log-probs,
    since ending the turn was itself a sampled decision, but not of ``completion``, which is
    decoded without special tokens.
    """

    prompt_index: int
    sample_index: int
    prompt: str | list
    rendered_prompt: str
    completion: str
    token_ids: list[int]
    stop_reason: str
    alpha: float
    logprob_sampled: list[float]
    logprob_after: list[float]
    logprob_before: list[float] | None
    kl_amp_after: float
    kl_per_token: list[float] = field(default_factory=list, repr=False)
    prompt_token_ids: list[int] = field(default_factory=list, repr=False)
    top_logprobs: list[list[tuple[int, float]]] | None = field(default=None, repr=False)
    logprob_at: dict[float, list[float]] = field(default_factory=dict, repr=False)
    logprob_policy: list[float] = field(default_factory=list, repr=False)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def completion_token_ids(self) -> list[int]:
        """``token_ids`` without an EOS / end-of-turn stop token (``completion`` decodes them,
        skipping special tokens)."""
        return _completion_ids(self.token_ids, self.stop_reason)


def rollout_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A 63-bit seed for one rollout's private random stream."""
    digest = hashlib.blake2b(f"{seed}:{prompt_index}:{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def rollout_uniforms(streams: Sequence[tuple[int, int, int]], steps: int) -> torch.Tensor:
    """``[len(streams), steps]`` uniforms in [0, 1), row i from stream ``(seed, prompt, sample)``."""
    rows = []
    for seed, prompt_index, sample_index in streams:
        gen = torch.Generator().manual_seed(rollout_seed(seed, prompt_index, sample_index))
        rows.append(torch.rand(steps, generator=gen))
    return torch.stack(rows)


def combine(after: torch.Tensor, before: torch.Tensor | None, alpha: float | Sequence[float]) -> torch.Tensor:
    """Amplified logits in float32; ids impossible under either model stay impossible.

    ``alpha`` is one number, or one per row. ``torch.lerp(before, after, 1 + alpha)`` is
    ``after + alpha * (after - before)`` in one fused kernel, and its two-sided formula returns
    ``after`` exactly at alpha 0 and ``before`` exactly at alpha -1; a per-row weight gives each row
    what its own alpha alone gives.
    """
    per_row = not isinstance(alpha, int | float)
    if before is None or (not per_row and alpha == 0):
        return after.float()
    after, before = after.float(), before.float()
    weight = torch.tensor([1.0 + a for a in alpha], device=after.device)[:, None] if per_row else 1.0 + alpha
    amp = torch.lerp(before, after, weight)
    if not torch.isfinite(amp).all():
        impossible = torch.isneginf(after) | torch.isneginf(before)
        amp = amp.masked_fill(impossible, float("-inf"))
    return amp


def inverse_cdf_sample(logits: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one id per row from softmax(logits) with one uniform in [0, 1) per row.

    Returns the ids and their log-probabilities, both from the one unnormalised cumulative sum.
    """
    peak = logits.max(dim=-1, keepdim=True).values
    cdf = (logits - peak).exp_().cumsum_(dim=-1)
    total = cdf[:, -1:]
    target = uniforms.to(cdf.device, cdf.dtype).unsqueeze(-1) * total
    # Rounding can carry u * total up to total itself, past every id with positive probability.
    target = torch.minimum(target, torch.nextafter(total, torch.zeros_like(total)))
    ids = torch.searchsorted(cdf, target, right=True).clamp_(max=logits.shape[-1] - 1)
    logprob = logits.gather(-1, ids) - peak - total.log()
    return ids.squeeze(-1), logprob.squeeze(-1)


def token_logprob(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[row, ids[row]] without materialising the whole log-softmax."""
    return logits.gather(-1, ids[:, None]).squeeze(-1) - logits.logsumexp(-1)


def top_alternatives(logits: torch.Tensor, k: int) -> list[list[tuple[int, float]]]:
    """Per row, the ``k`` likeliest ``(id, log-prob)`` under softmax(logits), likeliest first.

    Ids a sampling transform ruled out (-inf: outside top-p / top-k) have probability 0 under
    the distribution sampled from and are left out, so a row may list fewer than ``k``.
    """
    values, ids = logits.topk(min(k, logits.shape[-1]), dim=-1)
    values = values - logits.logsumexp(-1, keepdim=True)
    return [
        [(i, v) for i, v in zip(row_ids, row_values, strict=True) if v != float("-inf")]
        for row_ids, row_values in zip(ids.tolist(), values.tolist(), strict=True)
    ]


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) || softmax(q)) per row; terms with p = 0 contribute 0.

    Written as ``<softmax(p), p - q> - lse(p) + lse(q)`` to keep few [rows, vocab] buffers
    alive: on CPU each fresh one costs page faults comparable to the arithmetic itself. That sum
    of large terms rounds to about -1e-7 where the divergence is 0, so it is clamped at 0: a KL is
    never negative, and equal distributions read exactly 0.
    """
    probs = torch.softmax(p_logits, -1)
    diff = p_logits - q_logits
    kl = torch.linalg.vecdot(probs, diff) - p_logits.logsumexp(-1) + q_logits.logsumexp(-1)
    if not torch.isfinite(kl).all():  # -inf logits: 0 * inf terms must count as 0
        diff = torch.where(probs > 0, diff, torch.zeros_like(diff))
        kl = torch.linalg.vecdot(probs, diff) - p_logits.logsumexp(-1) + q_logits.logsumexp(-1)
    return kl.clamp_min(0.0)


@contextmanager
def inference_state(models):
    """Eval mode and no grad for the duration; every model's train/eval flag restored after.

    Eval mode matters beyond dropout: dropout would draw from the global RNG, and PEFT refuses
    mixed-adapter batches in train mode.
    """
    modes = [(m, m.training) for m in models]
    try:
        for m, _ in modes:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, was_training in modes:
            m.train(was_training)


class _StopRules:
    """Per-row stop decisions: EOS, end-of-turn (a new turn's start counts as the end of this one),
    stop strings."""

    def __init__(self, tokenizer, generation_config, stop_strings, ignore_eos=False):
        self.tokenizer = tokenizer
        self.end_of_turn = set() if ignore_eos else end_of_turn_ids(tokenizer) | start_of_turn_ids(tokenizer)
        self.eos = set() if ignore_eos else eos_ids(tokenizer, generation_config) - self.end_of_turn
        self.stop_strings = tuple(stop_strings)

    def reason(self, token_id: int, generated: list[int]) -> str | None:
        if token_id in self.end_of_turn:
            return STOP_END_OF_TURN
        if token_id in self.eos:
            return STOP_EOS
        if self.stop_strings:
            text = self.tokenizer.decode(generated[-32:], skip_special_tokens=False)
            if any(s in text for s in self.stop_strings):
                return STOP_STRING
        return None


@dataclass(frozen=True)
class _Decoder:
    """What every batch of one :func:`sample` call decodes with."""

    pair: LogitPair
    config: SamplingConfig
    stops: _StopRules
    transforms: Transforms
    lockstep: object = None  # a Ranks keeping a process group's forwards in step, or None
    top_logprobs: int = 0
    score_alphas: tuple[float, ...] = ()


@dataclass(frozen=True)
class _Batch:
    """The rows decoded together: each row's prompt ids, random stream ``(seed, prompt index,
    sample index)`` and alpha. Rows with equal ``prompt_keys`` share a prompt, which is prefilled
    once and its cache copied to each of them (None: every row its own prompt)."""

    prompt_ids: Sequence[list[int]]
    streams: Sequence[tuple[int, int, int]]
    alphas: Sequence[float]
    prompt_keys: Sequence | None = None


@dataclass(frozen=True)
class _Step:
    """One decode step's sampled ids and their numbers, one entry per live row (see :class:`Rollout`
    for what each log-prob is of). ``after``, ``before`` and ``kl`` are None when no row of the
    batch needed the before forward; ``top`` when no alternatives were asked for."""

    ids: torch.Tensor
    tokens: list[int]
    sampled: list[float]
    policy: list[float]
    after: list[float] | None
    before: list[float] | None
    kl: list[float] | None
    top: list | None
    at: dict[float, list[float]]


@dataclass
class _Row:
    """One row's tokens and per-token numbers as the loop appends them, named as in :class:`Rollout`.
    ``logprob_before`` is None for a row that needs no before forward of its own (alpha 0, nothing
    scored), so its record does not depend on the alphas of the rows it shares a batch with."""

    logprob_before: list[float] | None
    top_logprobs: list | None
    logprob_at: dict[float, list[float]]
    token_ids: list[int] = field(default_factory=list)
    logprob_sampled: list[float] = field(default_factory=list)
    logprob_after: list[float] = field(default_factory=list)
    logprob_policy: list[float] = field(default_factory=list)
    kl_per_token: list[float] = field(default_factory=list)
    stop_reason: str | None = None

    def append(self, step: _Step, j: int) -> None:
        """Add live row ``j``'s entry of ``step``."""
        self.token_ids.append(step.tokens[j])
        self.logprob_sampled.append(step.sampled[j])
        self.logprob_policy.append(step.policy[j])
        if self.logprob_before is not None:
            self.logprob_after.append(step.after[j])
            self.logprob_before.append(step.before[j])
            self.kl_per_token.append(step.kl[j])
        else:  # sampled from the after model itself: as if decoded without the before forward
            self.logprob_after.append(step.sampled[j])
            self.kl_per_token.append(0.0)
        if self.top_logprobs is not None:
            self.top_logprobs.append(step.top[j])
        for a, values in step.at.items():
            self.logprob_at[a].append(values[j])


def _step(decoder: _Decoder, after, before, row_alphas: list[float], uniforms, need_before: bool) -> _Step:
    """Sample one token per live row from its amplified distribution, and score it."""
    transforms = decoder.transforms
    amp = combine(after, before, row_alphas[0] if len(set(row_alphas)) == 1 else row_alphas)
    sampled_from = transforms(amp)
    if decoder.config.greedy:
        ids = sampled_from.argmax(-1)
        lp_s = token_logprob(sampled_from, ids)
    else:
        ids, lp_s = inverse_cdf_sample(sampled_from, uniforms)
    policy = transforms.temper(after)
    return _Step(
        ids=ids,
        tokens=ids.tolist(),
        sampled=lp_s.tolist(),
        policy=token_logprob(policy, ids).tolist(),
        after=token_logprob(transforms.truncate(policy), ids).tolist() if need_before else None,
        before=token_logprob(transforms(before), ids).tolist() if need_before else None,
        kl=kl_divergence(amp, after).tolist() if need_before else None,
        top=top_alternatives(sampled_from, decoder.top_logprobs) if decoder.top_logprobs else None,
        at={a: _score(after, before, a, row_alphas, transforms, ids, lp_s) for a in decoder.score_alphas},
    )


def _decode_batch(decoder: _Decoder, batch: _Batch, on_done: Callable[[list[int]], None] | None = None,
                  stop_hook: Callable[[int, list[int]], bool] | None = None) -> list[_Row]:
    """Decode one batch; returns one :class:`_Row` per row, in the order of ``batch.streams``.

    ``on_done``: called with the indices of the rows that finished, at the step they finished.
    ``stop_hook(row, ids)``: True stops that row after ``ids`` (next to the end-of-turn stop).

    Each of ``decoder.score_alphas`` (see :func:`sample`) costs one ``combine`` + transforms +
    log-sum-exp per step over the rows not sampled at that alpha, and forces the before forward for
    every row.

    With ``decoder.lockstep`` (a :class:`~lda_monitor.engine.distributed.Ranks`), the loop runs while
    any rank has a live row: a rank whose rows have all stopped keeps one finished row running, its
    output ignored, so every rank makes the same forward calls (FSDP / ZeRO-3 forwards are
    collectives)."""
    pair, config, lockstep = decoder.pair, decoder.config, decoder.lockstep
    device = pair.device
    row_needs_before = [a != 0 or bool(decoder.score_alphas) for a in batch.alphas]
    need_before = any(row_needs_before)
    keys = list(batch.prompt_keys) if batch.prompt_keys is not None else list(range(len(batch.streams)))
    unique = list(dict.fromkeys(keys))
    first = {k: keys.index(k) for k in unique}
    input_ids, mask, position_ids = left_pad([batch.prompt_ids[first[k]] for k in unique], pad_id(pair.tokenizer),
                                             device)
    uniforms = rollout_uniforms(batch.streams, config.max_new_tokens)
    rows = [_Row(logprob_before=[] if needs else None, top_logprobs=[] if decoder.top_logprobs else None,
                 logprob_at={a: [] for a in decoder.score_alphas}) for needs in row_needs_before]
    live = torch.arange(len(batch.streams))  # batch rows still decoding -> index into `rows`
    session = pair.open(need_before=need_before)
    after, before = session.forward(input_ids, mask, position_ids)
    if len(unique) < len(keys):  # one prefill per prompt, copied to each of its rows
        expand = torch.tensor([unique.index(k) for k in keys], device=device)
        session.keep_rows(expand)
        after, mask = after[expand.to(after.device)], mask[expand]
        before = before[expand.to(before.device)] if before is not None else None
    next_position = mask.sum(-1)
    idle = False  # every local row has stopped; running one along for the other ranks
    for step in range(config.max_new_tokens):
        numbers = _step(decoder, after, before, [batch.alphas[i] for i in live.tolist()], uniforms[live, step],
                        need_before)
        keep = []
        for j, row_index in enumerate(live.tolist()):
            if idle:
                break
            row = rows[row_index]
            row.append(numbers, j)
            row.stop_reason = decoder.stops.reason(numbers.tokens[j], row.token_ids)
            if row.stop_reason is None and stop_hook is not None and stop_hook(row_index, row.token_ids):
                row.stop_reason = STOP_DECIDED
            if row.stop_reason is None:
                keep.append(j)
        if on_done is not None and not idle and len(keep) < len(live):
            kept = set(keep)
            on_done([row_index for j, row_index in enumerate(live.tolist()) if j not in kept])
        if step == config.max_new_tokens - 1:
            break
        # Every rank takes part in this collective at every step, whatever its own rows did.
        someone_live = lockstep.any(bool(keep)) if lockstep is not None else bool(keep)
        if not someone_live:
            break
        if not keep:
            keep, idle = [0], True
        tokens = numbers.ids
        if len(keep) < len(live):
            keep_t = torch.tensor(keep, dtype=torch.long)
            session.keep_rows(keep_t.to(device))
            live, tokens = live[keep_t], tokens[keep_t.to(tokens.device)]
            mask, next_position = mask[keep_t.to(device)], next_position[keep_t.to(device)]
        mask = torch.cat([mask, mask.new_ones((len(keep), 1))], dim=-1)
        after, before = session.forward(
            tokens[:, None].to(device), mask, next_position[:, None]
        )
        next_position = next_position + 1
    cut = [i for i, row in enumerate(rows) if row.stop_reason is None]
    for i in cut:
        rows[i].stop_reason = STOP_MAX_TOKENS
    if on_done is not None and cut:
        on_done(cut)
    return rows


def _score(after, before, alpha, row_alphas, transforms, tokens, lp_s) -> list[float]:
    """Log-probs of ``tokens`` under the sampler at ``alpha`` (reusing ``lp_s`` on rows sampled at
    that alpha). With truncation (top-k/top-p/min-p) the transforms are applied here too, so a
    token outside that alpha's nucleus gets -inf: the density it was really drawn from, which is
    what multiple importance sampling needs (support gaps are the estimator's to handle)."""
    out = lp_s.clone()
    others = [i for i, a in enumerate(row_alphas) if a != alpha]
    if others:
        idx = torch.tensor(others, device=after.device)
        amp = combine(after[idx], before[idx], alpha)
        out[idx.to(out.device)] = token_logprob(transforms(amp), tokens[idx.to(tokens.device)])
    return out.tolist()


def sample(
    pair: LogitPair,
    prompts: Sequence[str | list],
    config: SamplingConfig,
    *,
    samples_per_prompt: int = 1,
    work: Sequence[tuple[int, int]] | None = None,
    streams: Sequence[tuple[int, int, int]] | None = None,
    alphas: Sequence[float] | None = None,
    lockstep=None,
    top_logprobs: int = 0,
    score_alphas: Sequence[float] = (),
    on_done: Callable[[list[int]], None] | None = None,
    stop_when: Callable[[int, list[int]], bool] | None = None,
) -> list[Rollout]:
    """Sample amplified rollouts.

    ``stop_when(i, ids)``: True ends work item ``i``'s rollout after its tokens ``ids`` (stop
    reason ``decided``), for rollouts whose only use is a verdict already decided; checked after
    the stop tokens and stop strings.

    ``score_alphas``: also record each rollout's token log-probs under the sampler at each of
    these alphas (``Rollout.logprob_at``), for natural-rate estimation. Plain (alpha 0) rollouts
    then run the before forward too, which roughly doubles their forward cost (two models, or a
    doubled PEFT batch); the scoring itself is a few vector ops per step per alpha.

    ``work`` lists the (prompt index, sample index) pairs to roll out (default: every prompt x
    ``samples_per_prompt``); a rollout depends only on its pair, its alpha and its stream, so
    work can be split across batches or processes freely. Results come back in ``work`` order.

    ``streams`` names each work item's random stream as ``(seed, prompt index, sample index)``
    (default ``(config.seed, *work[i])``). A server that merges independent requests into one
    call passes each request's own seed and indices, so a request's rollouts are the ones it
    would get alone.

    ``alphas`` gives each work item its own alpha (default ``config.alpha`` for all): the runs of
    an evaluation (amplified, plain, the natural-rate ladder) decode as one batch, each prompt
    prefilled once per batch whatever its number of rows.

    ``lockstep`` (a :class:`~lda_monitor.engine.distributed.Ranks`) keeps the ranks of a process group
    in step when each samples its own share of the work: all run the same number of batches
    (a rank out of work decodes a one-token placeholder) and the same number of decode steps.
    It is required when the models are sharded (FSDP, ZeRO-3), whose forwards are collectives.

    ``top_logprobs`` > 0 also records, at every step, that many likeliest alternatives under the
    distribution sampled from (``Rollout.top_logprobs``; the OpenAI API's ``top_logprobs``). Off
    by default: it costs a top-k over the vocabulary per step.

    ``on_done`` is called with the indices (into ``work``) of the rollouts that finished, as they
    finish: a decode batch can run for minutes, and a progress bar that moved only between
    batches would look stuck.
    """
    lockstep = lockstep if lockstep is not None and lockstep.active else None
    if work is None:
        work = [(p, s) for p in range(len(prompts)) for s in range(samples_per_prompt)]
    if not work and lockstep is None:
        return []
    streams, alphas = _streams_and_alphas(work, config, streams, alphas)
    tokenizer = pair.tokenizer
    rendered, encoded = _encode_prompts(tokenizer, prompts, sorted({p for p, _ in work}), config)
    generation_config = getattr(pair.models[0], "generation_config", None)
    decoder = _Decoder(pair, config, _StopRules(tokenizer, generation_config, config.stop_strings, config.ignore_eos),
                       Transforms(config), lockstep, top_logprobs,
                       tuple(dict.fromkeys(float(a) for a in score_alphas)))
    # Similar lengths together waste less compute on padding, and a prompt's rows together share
    # its prefill; results do not depend on order.
    order = sorted(range(len(work)), key=lambda i: (len(encoded[work[i][0]]), work[i][0]))
    results: list[Rollout | None] = [None] * len(work)
    with inference_state(pair.models):
        for chunk in _batches(order, config.batch_size, lockstep):
            if not chunk:  # out of work here; keep the other ranks' collectives company
                _decode_batch(decoder, _Batch([[pad_id(tokenizer)]], [(0, 0, 0)], [float(config.alpha)]))
                continue
            chunk_work = [work[i] for i in chunk]
            rows = _decode_batch(decoder, _Batch(
                prompt_ids=[encoded[p] for p, _ in chunk_work], streams=[streams[i] for i in chunk],
                alphas=[alphas[i] for i in chunk], prompt_keys=[p for p, _ in chunk_work]),
                on_done=None if on_done is None else lambda rows, chunk=chunk: on_done([chunk[r] for r in rows]),
                stop_hook=(lambda row, ids, chunk=chunk: stop_when(chunk[row], ids)) if stop_when else None)
            for i, (p, s), row in zip(chunk, chunk_work, rows, strict=True):
                results[i] = _to_rollout(tokenizer, prompts[p], rendered[p], encoded[p], p, s, row, alphas[i])
    return results  # type: ignore[return-value]


def _streams_and_alphas(work, config: SamplingConfig, streams, alphas) -> tuple[list, list[float]]:
    """Each work item's random stream and alpha: the ones given (one per item), else
    ``(config.seed, prompt, sample)`` and ``config.alpha``."""
    if streams is None:
        streams = [(config.seed, p, s) for p, s in work]
    elif len(streams) != len(work):
        raise ValueError(f"streams has {len(streams)} entries for {len(work)} work items")
    if alphas is None:
        alphas = [float(config.alpha)] * len(work)
    elif len(alphas) != len(work):
        raise ValueError(f"alphas has {len(alphas)} entries for {len(work)} work items")
    return list(streams), [float(a) for a in alphas]


def _encode_prompts(tokenizer, prompts, indices, config: SamplingConfig) -> tuple[dict, dict]:
    """The text both models see for each prompt index, and its token ids."""
    rendered = {p: render_prompt(tokenizer, prompts[p], system=config.system_prompt,
                                 chat_template=config.chat_template) for p in indices}
    encoded = {p: encode_rendered(tokenizer, text, chat_template=config.chat_template) for p, text in rendered.items()}
    return rendered, encoded


def _batches(order: list[int], batch_size: int, lockstep) -> list[list[int]]:
    """``order`` cut into batches of at most ``batch_size``, of equal size: a short last batch would
    pay every decode step's fixed cost for a few rows. Under ``lockstep`` every rank runs as many
    batches as the busiest one (an empty batch: nothing left here)."""
    batches = -(-len(order) // batch_size)
    size = -(-len(order) // batches) if batches else batch_size
    if lockstep is not None:
        batches = lockstep.max(batches)
    return [order[start : start + size] for start in range(0, batches * size, size)]


def _completion_ids(ids: list[int], stop_reason: str) -> list[int]:
    return ids[:-1] if stop_reason in (STOP_EOS, STOP_END_OF_TURN) else ids


def _to_rollout(tokenizer, prompt, rendered, prompt_ids, p, s, row: _Row, alpha) -> Rollout:
    ids = row.token_ids
    return Rollout(
        prompt_index=p,
        sample_index=s,
        prompt=prompt,
        rendered_prompt=rendered,
        completion=tokenizer.decode(_completion_ids(ids, row.stop_reason), skip_special_tokens=True),
        token_ids=list(ids),
        stop_reason=row.stop_reason,
        alpha=alpha,
        logprob_sampled=row.logprob_sampled,
        logprob_after=row.logprob_after,
        logprob_policy=row.logprob_policy,
        logprob_before=row.logprob_before,
        kl_amp_after=sum(row.kl_per_token) / max(len(ids), 1),
        kl_per_token=row.kl_per_token,
        prompt_token_ids=list(prompt_ids),
        top_logprobs=row.top_logprobs,
        logprob_at=row.logprob_at,
    )
