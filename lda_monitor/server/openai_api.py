"""The OpenAI-compatible routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Any eval harness that speaks the OpenAI API (the ``openai`` SDK, inspect_ai, lm-evaluation-harness,
promptfoo) can then run against the amplified distribution of a checkpoint pair with no code of
ours in between. The routes sit on the reference API's app and share its request batcher, engine
and limits: requests from many clients are merged into shared decode batches, and a ``seed``
gives the same completions alone or merged.

The model name chooses the side, for harnesses that cannot send extra fields:

* ``lda``: amplified, at the request's ``alpha`` (``extra_body={"alpha": 2}``) or the server's
  ``--alpha``;
* ``after``: the after model alone (alpha 0); ``before``: the before model alone (alpha -1).

Log-probs are those of the distribution sampled from (the amplified logits after temperature and
top-p; at temperature 0, the amplified logits themselves). Errors come in OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, with 400 for a bad value (FastAPI's 422 is
converted on these routes, so SDKs raise their ``BadRequestError``) and 404 for an unknown model.

Completions are streamed (``stream: true``) in the standard chunk objects once the engine has
decoded them: the engine decodes whole batches, so chunks arrive together at the end rather than
token by token; their concatenation is the non-streamed completion.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from ..engine.sampling import STOP_MAX_TOKENS, STOP_STRING, Rollout, SamplingConfig
from .errors import GenerationFailed, RequestError
from .openai_schema import (
    MAX_STOP_SEQUENCES,
    ChatCompletionRequest,
    CompletionRequest,
    OpenAISamplingFields,
)
from .schema import MAX_NEW_TOKENS

PREFIX = "/v1/"
# Model name -> alpha it fixes (None: the request's alpha, else the server's --alpha).
SIDES = {"lda": None, "after": 0.0, "before": -1.0}


class OpenAIError(Exception):
    """A request refused in OpenAI's error shape; ``param`` names the offending field."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse(status_code=self.status, content={"error": error})


def _field(loc) -> str:
    """``["body", "messages", 0, "role"]`` -> ``"messages.0.role"``."""
    parts = list(loc)[1:] if loc and loc[0] == "body" else list(loc)
    return ".".join(str(p) for p in parts)


def _invalid(exc: RequestValidationError) -> OpenAIError:
    errors = exc.errors()
    fields = [_field(e["loc"]) for e in errors]
    message = "; ".join(f"{f}: {e['msg']}" if f else e["msg"] for f, e in zip(fields, errors, strict=True))
    return OpenAIError(400, message or "invalid request", param=fields[0] if fields else None)


def _refused(exc: RequestError) -> OpenAIError:
    (detail,) = exc.detail
    field = _field(detail["loc"])
    return OpenAIError(400, f"{field}: {detail['msg']}" if field else detail["msg"], param=field or None)


def _failed(exc: GenerationFailed) -> OpenAIError:
    return OpenAIError(500, str(exc), kind="server_error")


def _route_errors(app, exc_type: type[Exception], convert: Callable[[Exception], OpenAIError]) -> None:
    """On ``/v1/`` paths answer ``exc_type`` in OpenAI's shape; elsewhere keep the app's handler."""
    fallback = app.exception_handlers[exc_type]

    async def handler(request, exc):
        if request.url.path.startswith(PREFIX):
            return convert(exc).response()
        return await fallback(request, exc)

    app.add_exception_handler(exc_type, handler)


@dataclass
class _Token:
    id: int
    piece: str  # the slice of the choice's text this token produced (chunks concatenate to it)
    offset: int  # where ``piece`` starts in the choice's text
    logprob: float
    top: list[tuple[int, float]]


@dataclass
class _Choice:
    index: int
    text: str
    finish_reason: str
    tokens: list[_Token]
    tail: str  # text after the last whole token: the start of a token that runs into a stop string


def add_openai_routes(app, *, tokenizer, run, render, limits, alpha: float) -> None:
    """Add the ``/v1`` routes to ``app`` (from :func:`~lda_monitor.server.app.create_app`).

    ``run`` and ``render`` are the app's own: the batcher submission and the prompt rendering
    with its token limit, so both APIs share one decode path and the same limits.
    """
    started = int(time.time())
    default_alpha = alpha
    _route_errors(app, RequestValidationError, _invalid)
    _route_errors(app, RequestError, _refused)
    _route_errors(app, GenerationFailed, _failed)

    async def _openai_error(_request, exc: OpenAIError):
        return exc.response()

    app.add_exception_handler(OpenAIError, _openai_error)

    def model_card(name: str) -> dict:
        return {"id": name, "object": "model", "created": started, "owned_by": "lda-monitor"}

    def side_alpha(req: OpenAISamplingFields) -> float:
        if req.model not in SIDES:
            raise OpenAIError(404, f"model: {req.model!r} is not served here; choose 'lda' (amplified at alpha), "
                                   "'after' (alpha 0) or 'before' (alpha -1)", param="model", code="model_not_found")
        fixed = SIDES[req.model]
        if fixed is None:
            return req.alpha if req.alpha is not None else default_alpha
        if req.alpha is not None and req.alpha != fixed:
            raise OpenAIError(400, f"alpha: {req.alpha:g} contradicts model {req.model!r}, which is alpha = {fixed:g}; "
                                   "use model 'lda' to choose alpha", param="alpha")
        return fixed

    def settings(req: OpenAISamplingFields, max_tokens: int | None, *, chat_template: bool) -> SamplingConfig:
        """The engine's settings; greedy requests drop the knobs greedy ignores, so they share batches."""
        stops = req.stop_strings()
        if len(stops) > MAX_STOP_SEQUENCES or not all(stops):
            raise OpenAIError(400, f"stop: up to {MAX_STOP_SEQUENCES} non-empty strings, got {list(stops)!r}",
                              param="stop")
        if req.n > limits.max_samples:
            raise OpenAIError(400, f"n: {req.n} completions; this server allows at most {limits.max_samples} "
                                   "(--max-samples)", param="n")
        greedy = req.temperature == 0
        return SamplingConfig(
            alpha=side_alpha(req), max_new_tokens=max_tokens or MAX_NEW_TOKENS, greedy=greedy,
            temperature=1.0 if greedy else req.temperature, top_p=1.0 if greedy else req.top_p,
            stop_strings=stops, seed=req.seed if req.seed is not None else secrets.randbits(63),
            chat_template=chat_template,
        )

    def choice(index: int, r: Rollout, stops: tuple[str, ...], with_tokens: bool) -> _Choice:
        """One choice: the text cut before a stop string (as OpenAI does), and per token its piece of
        that text (by incremental decoding), its log-prob and alternatives when asked for. Like
        OpenAI's, the tokens stop before the stop string: a token reaching into it is left out, and
        the text it contributed before the stop string is the choice's ``tail``."""
        full = r.completion
        text = full
        if r.stop_reason == STOP_STRING:
            text = full[: min((i for s in stops if (i := full.find(s)) >= 0), default=len(full))]
        finish = "length" if r.stop_reason == STOP_MAX_TOKENS else "stop"
        if not with_tokens:
            return _Choice(index, text, finish, [], "")
        ids, tokens, start = r.completion_token_ids, [], 0
        for i, token_id in enumerate(ids):
            decoded = len(full) if i == len(ids) - 1 else len(tokenizer.decode(ids[: i + 1], skip_special_tokens=False))
            end = min(max(start, decoded), len(full))
            if end > len(text):
                break
            top = r.top_logprobs[i] if r.top_logprobs is not None else []
            tokens.append(_Token(token_id, full[start:end], start, r.logprob_sampled[i], top))
            start = end
        return _Choice(index, text, finish, tokens, text[start:])

    def usage(rollouts: list[Rollout]) -> dict:
        prompt = sum(len(r.prompt_token_ids) for r in rollouts if r.sample_index == 0)
        completion = sum(r.num_tokens for r in rollouts)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def token_text(token_id: int) -> str:
        return tokenizer.decode([token_id], skip_special_tokens=False)

    def chat_logprob(t: _Token) -> dict:
        text = token_text(t.id)
        return {"token": text, "logprob": t.logprob, "bytes": list(text.encode()),
                "top_logprobs": [{"token": (alt := token_text(i)), "logprob": lp, "bytes": list(alt.encode())}
                                 for i, lp in t.top]}

    def completion_logprobs(tokens: list[_Token]) -> dict:
        return {"tokens": [token_text(t.id) for t in tokens], "token_logprobs": [t.logprob for t in tokens],
                "top_logprobs": [{token_text(i): lp for i, lp in t.top} for t in tokens],
                "text_offset": [t.offset for t in tokens]}

    def envelope(kind: str, req: OpenAISamplingFields, config: SamplingConfig) -> dict:
        """Fields every response and chunk carries; ``alpha`` and ``seed`` are extras that say how
        to reproduce it (SDKs keep unknown fields)."""
        prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
        return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": req.model,
                "system_fingerprint": f"lda-monitor alpha={config.alpha:g}", "alpha": config.alpha,
                "seed": config.seed}

    def sse(chunks: Iterator[dict]) -> StreamingResponse:
        def events():
            for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def include_usage(req: OpenAISamplingFields) -> bool:
        return bool((req.stream_options or {}).get("include_usage"))

    @app.get("/v1/models")
    async def list_models() -> dict:
        """The served sides: 'lda' (amplified), 'after' (alpha 0), 'before' (alpha -1)."""
        return {"object": "list", "data": [model_card(name) for name in SIDES]}

    @app.get("/v1/models/{model}")
    async def retrieve_model(model: str) -> dict:
        if model not in SIDES:
            raise OpenAIError(404, f"model: {model!r} is not served here; choose one of {', '.join(SIDES)}",
                              param="model", code="model_not_found")
        return model_card(model)

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest):
        """Chat turns rendered with the after model's chat template, answered by the side ``model`` names."""
        if req.top_logprobs and not req.logprobs:
            raise OpenAIError(400, "top_logprobs: needs logprobs: true", param="top_logprobs")
        if not getattr(tokenizer, "chat_template", None):
            raise OpenAIError(400, "messages: the after model has no chat template; send raw text to "
                                   "/v1/completions instead", param="messages")
        config = settings(req, req.max_completion_tokens or req.max_tokens, chat_template=True)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in req.messages]
        render(messages, ["messages"])
        rollouts = await run([messages], config, req.n, (req.top_logprobs or 0) if req.logprobs else 0,
                             seeded=req.seed is not None)
        choices = [choice(i, r, config.stop_strings, req.logprobs or req.stream) for i, r in enumerate(rollouts)]
        head = envelope("chat.completion", req, config)
        if not req.stream:
            return {**head, "choices": [
                {"index": c.index, "message": {"role": "assistant", "content": c.text, "refusal": None},
                 "logprobs": {"content": [chat_logprob(t) for t in c.tokens], "refusal": None} if req.logprobs
                 else None, "finish_reason": c.finish_reason} for c in choices], "usage": usage(rollouts)}

        head = {**head, "object": "chat.completion.chunk"}
        extra = {"usage": None} if include_usage(req) else {}

        def chunk(index, delta, logprobs=None, finish=None):
            return {**head, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                         "finish_reason": finish}], **extra}

        def chunks():
            for c in choices:
                yield chunk(c.index, {"role": "assistant", "content": ""})
                for t in c.tokens:
                    logprobs = {"content": [chat_logprob(t)], "refusal": None} if req.logprobs else None
                    yield chunk(c.index, {"content": t.piece}, logprobs)
                yield chunk(c.index, {"content": c.tail} if c.tail else {}, finish=c.finish_reason)
            if extra:
                yield {**head, "choices": [], "usage": usage(rollouts)}

        return sse(chunks())

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        """Raw prompt text (no chat template) continued by the side ``model`` names."""
        if req.echo:
            raise OpenAIError(400, "echo: not supported (this server does not score the prompt's own tokens)",
                              param="echo")
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts or not all(prompts):
            raise OpenAIError(400, "prompt: needs at least one non-empty string", param="prompt")
        if len(prompts) > limits.max_prompts:
            raise OpenAIError(400, f"prompt: {len(prompts)} prompts; this server accepts at most {limits.max_prompts} "
                                   "per request (--max-prompts)", param="prompt")
        config = settings(req, req.max_tokens, chat_template=False)
        for i, p in enumerate(prompts):
            render(p, ["prompt"] if isinstance(req.prompt, str) else ["prompt", i], chat_template=False)
        with_logprobs = req.logprobs is not None
        rollouts = await run(prompts, config, req.n, req.logprobs or 0, seeded=req.seed is not None)
        choices = [choice(i, r, config.stop_strings, with_logprobs or req.stream) for i, r in enumerate(rollouts)]
        head = envelope("text_completion", req, config)
        if not req.stream:
            return {**head, "choices": [
                {"index": c.index, "text": c.text, "logprobs": completion_logprobs(c.tokens) if with_logprobs else None,
                 "finish_reason": c.finish_reason} for c in choices], "usage": usage(rollouts)}

        extra = {"usage": None} if include_usage(req) else {}

        def chunk(index, text, logprobs=None, finish=None):
            return {**head, "choices": [{"index": index, "text": text, "logprobs": logprobs,
                                         "finish_reason": finish}], **extra}

        def chunks():
            for c in choices:
                for t in c.tokens:
                    yield chunk(c.index, t.piece, completion_logprobs([t]) if with_logprobs else None)
                yield chunk(c.index, c.tail, finish=c.finish_reason)
            if extra:
                yield {**head, "choices": [], "usage": usage(rollouts)}

        return sse(chunks())
