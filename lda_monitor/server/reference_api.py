"""The reference LDA server's endpoints and fields, served by this package's engine.

Differences from the reference server, each deliberate:

* ``apply_chat_template`` renders with the after model's own chat template (the reference
  hard-codes an Alpaca prompt); ``formatted_prompt`` shows exactly what the models saw;
* rows stop at EOS *and* the template's end-of-turn token, with explicit position ids under
  left padding (see :mod:`lda_monitor.engine.sampling`);
* alpha may be negative, down to ``-schema.MAX_ABS_ALPHA`` (-1 is the before model exactly);
* ``/generate`` samples the before model as alpha = -1 of the same pair, so a PEFT pair needs
  no second copy of the weights;
* incompatible tokenizers are refused when the server starts, so ``/tokenizer_compatibility``
  only ever reports compatible pairs (with a warning when vocabulary sizes differ).
"""

from __future__ import annotations

import asyncio
import dataclasses

from fastapi import APIRouter

from ..engine.sampling import STOP_MAX_TOKENS, Rollout
from .sampler import sampling_config
from .schema import (
    Completion,
    GenerateRequest,
    GenerateResponse,
    HealthInfo,
    JudgeVerdict,
    LDABatchRequest,
    LDABatchResponse,
    LDAFields,
    LDAGenerateRequest,
    LDAGenerateResponse,
    ModelResponse,
    PromptResult,
    TokenDiagnostics,
    TokenizerCompatibilityInfo,
)
from .state import ServerState, State

router = APIRouter()


async def verdicts(state: ServerState, prompts: list[str], rollouts: list[Rollout]) -> list[dict | None]:
    """Each rollout's verdicts by the server's judge; a judge failure is "unscored", never "safe"."""
    judge = state.judge
    if judge is None:
        return [None] * len(rollouts)
    questions = [prompts[r.prompt_index] for r in rollouts]
    try:
        by_judge = await asyncio.to_thread(judge.evaluate, questions, [r.completion for r in rollouts])
    except Exception as exc:  # reported per completion, with the cause
        error = f"judge failed: {type(exc).__name__}: {exc}"
        return [{judge.name: JudgeVerdict(flagged=None, error=error)} for _ in rollouts]
    return [{name: JudgeVerdict(**found[i].to_dict()) for name, found in by_judge.items()}
            for i in range(len(rollouts))]


def completion(tokenizer, r: Rollout, verdict: dict | None, diagnostics: bool) -> Completion:
    """Optional parts are set only when asked for: responses leave unset fields out (never
    ``exclude_none``, which would also drop an unscored verdict's ``flagged: null``)."""
    optional = {}
    if diagnostics:
        optional["diagnostics"] = TokenDiagnostics(
            tokens=[str(t) for t in tokenizer.convert_ids_to_tokens(r.token_ids)],
            logprob_amplified=r.logprob_sampled, logprob_after=r.logprob_after, logprob_before=r.logprob_before,
            kl_amp_after=r.kl_per_token, kl_amp_after_mean=r.kl_amp_after,
        )
    if verdict is not None:
        optional["verdicts"] = verdict
    return Completion(
        completion=r.completion,
        text=tokenizer.decode(r.prompt_token_ids + r.completion_token_ids, skip_special_tokens=True),
        tokens_generated=r.num_tokens, stopped_early=r.stop_reason != STOP_MAX_TOKENS, stop_reason=r.stop_reason,
        **optional,
    )


def set_fields(model) -> dict:
    return {name: getattr(model, name) for name in model.model_fields_set}


async def lda_results(state: ServerState, prompts: list[str], req: LDAFields, loc: str) -> tuple[list, int]:
    """Each prompt's result (its samples when more than one) and the seed used."""
    state.check_samples(req.samples, "samples")
    config = sampling_config(req, alpha=req.alpha)
    rendered = [state.render(p, [loc] if loc == "prompt" else [loc, i], system=req.system_prompt,
                             chat_template=req.apply_chat_template) for i, p in enumerate(prompts)]
    rollouts = await state.run(prompts, config, req.samples, seeded=req.seed is not None)
    found = await verdicts(state, prompts, rollouts)
    results = []
    for i, prompt in enumerate(prompts):
        mine = [completion(state.tokenizer, r, v, req.diagnostics)
                for r, v in zip(rollouts, found, strict=True) if r.prompt_index == i]
        results.append(PromptResult(prompt=prompt, formatted_prompt=rendered[i], **set_fields(mine[0]),
                                    **({"samples": mine} if req.samples > 1 else {})))
    return results, config.seed


@router.post("/generate_lda", response_model=LDAGenerateResponse, response_model_exclude_unset=True)
async def generate_lda(req: LDAGenerateRequest, state: State) -> LDAGenerateResponse:
    """One prompt sampled from the amplified distribution."""
    (result,), seed = await lda_results(state, [req.prompt], req, "prompt")
    return LDAGenerateResponse(**set_fields(result), alpha=req.alpha, model_after=state.model_after,
                               model_before=state.model_before, seed=seed)


@router.post("/generate_lda_batch", response_model=LDABatchResponse, response_model_exclude_unset=True)
async def generate_lda_batch(req: LDABatchRequest, state: State) -> LDABatchResponse:
    """Several prompts, one amplified completion each (or ``samples`` each)."""
    state.check_prompts(len(req.prompts), "prompts")
    results, seed = await lda_results(state, list(req.prompts), req, "prompts")
    return LDABatchResponse(results=results, alpha=req.alpha, model_after=state.model_after,
                            model_before=state.model_before, batch_size=len(results), seed=seed)


@router.post("/generate", response_model=GenerateResponse)
async def generate(req: GenerateRequest, state: State) -> GenerateResponse:
    """The after model and the before model, each alone (alpha 0 and alpha -1), with one seed."""
    after_config = sampling_config(req, alpha=0.0)
    state.render(req.prompt, ["prompt"], system=req.system_prompt, chat_template=req.apply_chat_template)
    after, before = await asyncio.gather(*(
        state.run([req.prompt], config, seeded=req.seed is not None)
        for config in (after_config, dataclasses.replace(after_config, alpha=-1.0))))
    return GenerateResponse(prompt=req.prompt, model_1=model_response(state, state.model_after, after[0]),
                            model_2=model_response(state, state.model_before, before[0]), seed=after_config.seed)


def model_response(state: ServerState, model_id: str, r: Rollout) -> ModelResponse:
    c = completion(state.tokenizer, r, None, False)
    return ModelResponse(model_id=model_id, completion=c.completion, text=c.text)


@router.get("/tokenizer_compatibility", response_model=TokenizerCompatibilityInfo)
async def tokenizer_compatibility(state: State) -> TokenizerCompatibilityInfo:
    c = state.pair.compatibility
    return TokenizerCompatibilityInfo(compatible=c.compatible, vocab_size_1=c.vocab_size_after,
                                      vocab_size_2=c.vocab_size_before, vocabs_match=c.vocabs_match,
                                      warning=c.warning)


@router.get("/health", response_model=HealthInfo)
async def health(state: State) -> HealthInfo:
    stats = state.batcher.stats
    return HealthInfo(status="ok", model_after=state.model_after, model_before=state.model_before,
                      pair=state.pair.describe(), judge=getattr(state.judge, "name", None),
                      requests_served=stats.requests_served, engine_batches=stats.engine_batches,
                      queued=state.batcher.queued)
