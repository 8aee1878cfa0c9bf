"""The HTTP API: the reference LDA server's endpoints and fields, served by our engine (the
OpenAI-compatible ``/v1`` routes on the same app and batcher are in :mod:`.openai_api`).

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
import secrets
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ..engine.chat import encode_rendered, render_prompt
from ..engine.sampling import STOP_MAX_TOKENS, Rollout, SamplingConfig
from ..errors import UserInputError
from .batcher import RequestBatcher
from .errors import GenerationFailed, RequestError
from .schema import (
    MAX_ABS_ALPHA,
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
    SamplingFields,
    TokenDiagnostics,
    TokenizerCompatibilityInfo,
)


class Limits:
    """What one request may ask for (the server's command-line options)."""

    def __init__(self, *, max_prompt_tokens: int = 2048, max_prompts: int = 64, max_samples: int = 16):
        self.max_prompt_tokens, self.max_prompts, self.max_samples = max_prompt_tokens, max_prompts, max_samples


def create_app(
    pair,
    *,
    model_after: str,
    model_before: str,
    judge=None,
    limits: Limits | None = None,
    max_rows: int = 64,
    batch_wait_seconds: float = 0.0,
    alpha: float = 1.0,
) -> FastAPI:
    """A FastAPI app serving ``pair``; every forward pass runs on one engine thread.

    ``alpha`` is the OpenAI routes' default amplification (model ``lda`` without an ``alpha``
    field); the reference endpoints keep their own per-request default.
    """
    from .openai_api import add_openai_routes  # it imports this module's errors

    if not abs(alpha) <= MAX_ABS_ALPHA:
        raise UserInputError(f"--alpha must be within +-{MAX_ABS_ALPHA:g}, got {alpha}")
    limits = limits or Limits()
    batcher = RequestBatcher(pair, max_rows=max_rows, wait_seconds=batch_wait_seconds)
    tokenizer = pair.tokenizer

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(
        title="lda-monitor: Logit Diff Amplification API",
        description="Sample logits_after + alpha * (logits_after - logits_before); compatible with the "
                    "reference LDA server's endpoints, and OpenAI-compatible under /v1 (models 'lda', 'after', "
                    "'before').",
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def _refused(_request, exc: RequestError):
        return JSONResponse(status_code=422, content={"detail": exc.detail})

    @app.exception_handler(GenerationFailed)
    async def _failed(_request, exc: GenerationFailed):
        return JSONResponse(status_code=500, content={"detail": str(exc)})

    def config_for(req: SamplingFields, *, alpha: float, seed: int) -> SamplingConfig:
        try:
            return SamplingConfig(
                alpha=alpha, max_new_tokens=req.max_new_tokens, greedy=not req.do_sample,
                temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, seed=seed,
                system_prompt=req.system_prompt, chat_template=req.apply_chat_template,
            )
        except UserInputError as exc:
            raise RequestError([], str(exc)) from None

    def render(prompt: str | list, loc: list, *, system: str | None = None, chat_template: bool = True) -> str:
        """The text both models see; refuses prompts over the token limit."""
        try:
            rendered = render_prompt(tokenizer, prompt, system=system, chat_template=chat_template)
        except UserInputError as exc:
            raise RequestError(["apply_chat_template"], str(exc)) from None
        n = len(encode_rendered(tokenizer, rendered, chat_template=chat_template))
        if n > limits.max_prompt_tokens:
            raise RequestError(loc, f"the prompt is {n} tokens after formatting; this server accepts at most "
                                    f"{limits.max_prompt_tokens} (--max-prompt-tokens)", "too_long")
        return rendered

    def check_samples(req: LDAFields) -> None:
        if req.samples > limits.max_samples:
            raise RequestError(["samples"], f"samples is {req.samples}; this server allows at most "
                                            f"{limits.max_samples} (--max-samples)", "less_than_equal")

    async def run(prompts: list, config: SamplingConfig, samples: int = 1, top_logprobs: int = 0) -> list[Rollout]:
        try:
            return await asyncio.wrap_future(batcher.submit(prompts, config, samples, top_logprobs))
        except UserInputError as exc:
            raise RequestError([], str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the request fails; the engine thread serves on
            raise GenerationFailed(f"generation failed: {type(exc).__name__}: {exc}") from exc

    async def verdicts(prompts: list[str], rollouts: list[Rollout]) -> list[dict | None]:
        if judge is None:
            return [None] * len(rollouts)
        questions = [prompts[r.prompt_index] for r in rollouts]
        completions = [r.completion for r in rollouts]
        try:
            by_judge = await asyncio.to_thread(judge.evaluate, questions, completions)
        except Exception as exc:  # noqa: BLE001 - a judge failure is "unscored", never "safe"
            error = f"judge failed: {type(exc).__name__}: {exc}"
            return [{judge.name: JudgeVerdict(flagged=None, error=error)} for _ in rollouts]
        return [
            {name: JudgeVerdict(**found[i].to_dict()) for name, found in by_judge.items()}
            for i in range(len(rollouts))
        ]

    def completion(r: Rollout, verdict: dict | None, diagnostics: bool) -> Completion:
        """Optional parts are set only when asked for: responses leave unset fields out (never
        ``exclude_none``, which would also drop an unscored verdict's ``flagged: null``)."""
        optional = {}
        if diagnostics:
            optional["diagnostics"] = TokenDiagnostics(
                tokens=[str(t) for t in tokenizer.convert_ids_to_tokens(r.token_ids)],
                logprob_amplified=r.logprob_sampled,
                logprob_after=r.logprob_after,
                logprob_before=r.logprob_before,
                kl_amp_after=r.kl_per_token,
                kl_amp_after_mean=r.kl_amp_after,
            )
        if verdict is not None:
            optional["verdicts"] = verdict
        return Completion(
            completion=r.completion,
            text=tokenizer.decode(r.prompt_token_ids + r.completion_token_ids, skip_special_tokens=True),
            tokens_generated=r.num_tokens,
            stopped_early=r.stop_reason != STOP_MAX_TOKENS,
            stop_reason=r.stop_reason,
            **optional,
        )

    def set_fields(model) -> dict:
        return {name: getattr(model, name) for name in model.model_fields_set}

    async def lda_results(prompts: list[str], req: LDAFields, loc: str, seed: int) -> list[PromptResult]:
        check_samples(req)
        rendered = [render(p, [loc] if loc == "prompt" else [loc, i], system=req.system_prompt,
                           chat_template=req.apply_chat_template) for i, p in enumerate(prompts)]
        rollouts = await run(prompts, config_for(req, alpha=req.alpha, seed=seed), req.samples)
        found = await verdicts(prompts, rollouts)
        results = []
        for i, prompt in enumerate(prompts):
            mine = [completion(r, v, req.diagnostics) for r, v in zip(rollouts, found, strict=True)
                    if r.prompt_index == i]
            results.append(PromptResult(
                prompt=prompt, formatted_prompt=rendered[i], **set_fields(mine[0]),
                **({"samples": mine} if req.samples > 1 else {}),
            ))
        return results

    @app.post("/generate_lda", response_model=LDAGenerateResponse, response_model_exclude_unset=True)
    async def generate_lda(req: LDAGenerateRequest) -> LDAGenerateResponse:
        """One prompt sampled from the amplified distribution."""
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        (result,) = await lda_results([req.prompt], req, "prompt", seed)
        return LDAGenerateResponse(
            **set_fields(result), alpha=req.alpha, model_after=model_after,
            model_before=model_before, seed=seed,
        )

    @app.post("/generate_lda_batch", response_model=LDABatchResponse, response_model_exclude_unset=True)
    async def generate_lda_batch(req: LDABatchRequest) -> LDABatchResponse:
        """Several prompts, one amplified completion each (or ``samples`` each)."""
        if len(req.prompts) > limits.max_prompts:
            raise RequestError(["prompts"], f"{len(req.prompts)} prompts; this server accepts at most "
                                            f"{limits.max_prompts} per request (--max-prompts)", "too_long")
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        results = await lda_results(list(req.prompts), req, "prompts", seed)
        return LDABatchResponse(results=results, alpha=req.alpha, model_after=model_after,
                                model_before=model_before, batch_size=len(results), seed=seed)

    @app.post("/generate", response_model=GenerateResponse)
    async def generate(req: GenerateRequest) -> GenerateResponse:
        """The after model and the before model, each alone (alpha 0 and alpha -1)."""
        render(req.prompt, ["prompt"], system=req.system_prompt, chat_template=req.apply_chat_template)
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        after, before = await asyncio.gather(
            run([req.prompt], config_for(req, alpha=0.0, seed=seed)),
            run([req.prompt], config_for(req, alpha=-1.0, seed=seed)),
        )

        def side(model_id: str, r: Rollout) -> ModelResponse:
            c = completion(r, None, False)
            return ModelResponse(model_id=model_id, completion=c.completion, text=c.text)

        return GenerateResponse(prompt=req.prompt, model_1=side(model_after, after[0]),
                                model_2=side(model_before, before[0]), seed=seed)

    @app.get("/tokenizer_compatibility", response_model=TokenizerCompatibilityInfo)
    async def tokenizer_compatibility() -> TokenizerCompatibilityInfo:
        c = pair.compatibility
        return TokenizerCompatibilityInfo(compatible=c.compatible, vocab_size_1=c.vocab_size_after,
                                          vocab_size_2=c.vocab_size_before, vocabs_match=c.vocabs_match,
                                          warning=c.warning)

    @app.get("/health", response_model=HealthInfo)
    async def health() -> HealthInfo:
        stats = batcher.stats
        return HealthInfo(status="ok", model_after=model_after, model_before=model_before, pair=pair.describe(),
                          judge=getattr(judge, "name", None), requests_served=stats.requests_served,
                          engine_batches=stats.engine_batches, queued=batcher.queued)

    add_openai_routes(app, tokenizer=tokenizer, run=run, render=render, limits=limits, alpha=alpha)
    return app
