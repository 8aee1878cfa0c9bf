"""The OpenAI-compatible routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``
(and ``/v1/responses``, in :mod:`.openai_responses`).

Any eval harness that speaks the OpenAI API (the ``openai`` SDK, inspect_ai, lm-evaluation-harness,
promptfoo) can then run against the amplified distribution of a checkpoint pair with no code of
ours in between. The routes share the reference API's server state: its request batcher, engine
and limits, so requests from many clients are merged into shared decode batches.

The model name chooses the side, for harnesses that cannot send extra fields:

* ``lda``: amplified, at the request's ``alpha`` (``extra_body={"alpha": 2}``), else the ``alpha``
  query parameter, else the ``X-LDA-Alpha`` header, else the server's ``--alpha``. The two
  fallbacks are for clients that drop extra body fields: inspect_ai's ``openai/lda`` goes through
  the Responses API, which sends no ``extra_body``, but does send ``-M default_query='{alpha: 2}'``
  (a model arg its OpenAI client takes) and ``--extra-headers '{"X-LDA-Alpha": "2"}'``;
* ``after``: the after model alone (alpha 0); ``before``: the before model alone (alpha -1).

Log-probs are those of the distribution sampled from (the amplified logits after temperature and
top-p; at temperature 0, the amplified logits themselves). Errors come in OpenAI's shape
(:mod:`.openai_errors`).

Completions are streamed (``stream: true``) in the standard chunk objects once the engine has
decoded them: the engine decodes whole batches, so chunks arrive together at the end rather than
token by token; their concatenation is the non-streamed completion.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query

from ..engine.sampling import SamplingConfig
from .openai_errors import OpenAIError
from .openai_format import (
    Choice,
    chat_logprob,
    choice,
    completion_logprobs,
    envelope,
    sse,
    streamed,
    usage,
)
from .openai_replies import ChatCompletion, ChatCompletionChunk, Completion, CompletionChunk, ModelCard, ModelList
from .openai_schema import (
    MAX_ABS_ALPHA,
    MAX_STOP_SEQUENCES,
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIRequest,
)
from .sampler import sampling_config
from .state import ServerState, State

# Model name -> alpha it fixes (None: the request's alpha, else the server's --alpha).
SIDES = {"lda": None, "after": 0.0, "before": -1.0}

router = APIRouter(prefix="/v1")
ALPHA_HEADER = "X-LDA-Alpha"


def routed_alpha(
    alpha: float | None = Query(None, ge=-MAX_ABS_ALPHA, le=MAX_ABS_ALPHA,
                                description="amplification for model 'lda' when the body has no 'alpha'"),
    header: float | None = Header(None, alias=ALPHA_HEADER, ge=-MAX_ABS_ALPHA, le=MAX_ABS_ALPHA,
                                  description="amplification for model 'lda' when neither body nor query has one"),
) -> float | None:
    """The alpha a request carries outside its body (see the module docstring)."""
    return alpha if alpha is not None else header


RoutedAlpha = Annotated[float | None, Depends(routed_alpha)]


def side_alpha(req: OpenAIRequest, default_alpha: float, routed: float | None = None) -> float:
    """The request's alpha: the side's own, else the body's, else ``routed`` (:func:`routed_alpha`),
    else the server's."""
    asked = req.alpha if req.alpha is not None else routed
    if req.model not in SIDES:
        raise OpenAIError(404, f"model: {req.model!r} is not served here; choose 'lda' (amplified at alpha), "
                               "'after' (alpha 0) or 'before' (alpha -1)", param="model", code="model_not_found")
    fixed = SIDES[req.model]
    if fixed is None:
        return asked if asked is not None else default_alpha
    if asked is not None and asked != fixed:
        raise OpenAIError(400, f"alpha: {asked:g} contradicts model {req.model!r}, which is alpha = {fixed:g}; "
                               "use model 'lda' to choose alpha", param="alpha")
    return fixed


def openai_config(state: ServerState, req: OpenAIRequest, n: int = 1, routed: float | None = None) -> SamplingConfig:
    """The engine's settings for any OpenAI route, with the OpenAI API's own bounds."""
    stops = req.stop_strings()
    if len(stops) > MAX_STOP_SEQUENCES or not all(stops):
        raise OpenAIError(400, f"stop: up to {MAX_STOP_SEQUENCES} non-empty strings, got {list(stops)!r}",
                          param="stop")
    state.check_samples(n, "n")
    return sampling_config(req, alpha=side_alpha(req, state.default_alpha, routed))


def chat_messages(state: ServerState, messages: list[dict]) -> list[dict]:
    """The turns, checked: the after model must have a chat template, the prompt must fit."""
    if not getattr(state.tokenizer, "chat_template", None):
        raise OpenAIError(400, "messages: the after model has no chat template; send raw text to "
                               "/v1/completions instead", param="messages")
    state.render(messages, ["messages"])
    return messages


def model_card(state: ServerState, name: str) -> dict:
    return {"id": name, "object": "model", "created": state.started, "owned_by": "lda-monitor"}


@router.get("/models", response_model=ModelList)
async def list_models(state: State) -> dict:
    """The served sides: 'lda' (amplified), 'after' (alpha 0), 'before' (alpha -1)."""
    return {"object": "list", "data": [model_card(state, name) for name in SIDES]}


@router.get("/models/{model}", response_model=ModelCard)
async def retrieve_model(model: str, state: State) -> dict:
    if model not in SIDES:
        raise OpenAIError(404, f"model: {model!r} is not served here; choose one of {', '.join(SIDES)}",
                          param="model", code="model_not_found")
    return model_card(state, model)


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(req: ChatCompletionRequest, state: State, alpha: RoutedAlpha):
    """Chat turns rendered with the after model's chat template, answered by the side ``model`` names."""
    if req.top_logprobs and not req.logprobs:
        raise OpenAIError(400, "top_logprobs: needs logprobs: true", param="top_logprobs")
    config = openai_config(state, req, req.n, alpha)
    messages = chat_messages(state, [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                                     for m in req.messages])
    rollouts = await state.run([messages], config, req.n, (req.top_logprobs or 0) if req.logprobs else 0,
                               seeded=req.seed is not None)
    choices = [choice(state.tokenizer, i, r, config.stop_strings, req.logprobs or req.stream)
               for i, r in enumerate(rollouts)]
    head = envelope("chat.completion", req.model, config)
    if req.stream:
        return sse(chat_chunks(state, req, {**head, "object": "chat.completion.chunk"}, choices, usage(rollouts)))
    return {**head, "choices": [
        {"index": c.index, "message": {"role": "assistant", "content": c.text, "refusal": None},
         "logprobs": {"content": [chat_logprob(state.tokenizer, t) for t in c.tokens], "refusal": None}
         if req.logprobs else None, "finish_reason": c.finish_reason} for c in choices], "usage": usage(rollouts)}


def chat_chunks(state: ServerState, req: ChatCompletionRequest, head: dict, choices: list[Choice], used: dict):
    """Each choice as a role chunk, one chunk per token and a finish chunk; then usage if asked for."""

    def parts(c: Choice):
        yield {"delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        for t in c.tokens:
            logprobs = {"content": [chat_logprob(state.tokenizer, t)], "refusal": None} if req.logprobs else None
            yield {"delta": {"content": t.piece}, "logprobs": logprobs, "finish_reason": None}
        yield {"delta": {"content": c.tail} if c.tail else {}, "logprobs": None, "finish_reason": c.finish_reason}

    return streamed(ChatCompletionChunk, head, choices, used, _include_usage(req), parts)


@router.post("/completions", response_model=Completion)
async def completions(req: CompletionRequest, state: State, alpha: RoutedAlpha):
    """Raw prompt text (no chat template) continued by the side ``model`` names."""
    if req.echo:
        raise OpenAIError(400, "echo: not supported (this server does not score the prompt's own tokens)",
                          param="echo")
    prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
    if not prompts or not all(prompts):
        raise OpenAIError(400, "prompt: needs at least one non-empty string", param="prompt")
    state.check_prompts(len(prompts), "prompt")
    config = openai_config(state, req, req.n, alpha)
    for i, p in enumerate(prompts):
        state.render(p, ["prompt"] if isinstance(req.prompt, str) else ["prompt", i], chat_template=False)
    with_logprobs = req.logprobs is not None
    rollouts = await state.run(prompts, config, req.n, req.logprobs or 0, seeded=req.seed is not None)
    choices = [choice(state.tokenizer, i, r, config.stop_strings, with_logprobs or req.stream)
               for i, r in enumerate(rollouts)]
    head = envelope("text_completion", req.model, config)
    if req.stream:
        return sse(completion_chunks(state, req, head, choices, usage(rollouts)))
    return {**head, "choices": [
        {"index": c.index, "text": c.text, "finish_reason": c.finish_reason,
         "logprobs": completion_logprobs(state.tokenizer, c.tokens) if with_logprobs else None}
        for c in choices], "usage": usage(rollouts)}


def completion_chunks(state: ServerState, req: CompletionRequest, head: dict, choices: list[Choice], used: dict):
    """One chunk per token of each choice and a finish chunk; then usage if asked for."""

    def parts(c: Choice):
        for t in c.tokens:
            logprobs = completion_logprobs(state.tokenizer, [t]) if req.logprobs is not None else None
            yield {"text": t.piece, "logprobs": logprobs, "finish_reason": None}
        yield {"text": c.tail, "logprobs": None, "finish_reason": c.finish_reason}

    return streamed(CompletionChunk, head, choices, used, _include_usage(req), parts)


def _include_usage(req) -> bool:
    return bool((req.stream_options or {}).get("include_usage"))
