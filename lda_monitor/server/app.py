"""The app: the reference LDA API (:mod:`.reference_api`) and the OpenAI API (:mod:`.openai_api`,
:mod:`.openai_responses`) as routers over one :class:`~.state.ServerState`, whose batcher runs
every forward pass on one engine thread."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..config.server import SERVER_DEFAULTS
from ..errors import UserInputError
from . import openai_api, openai_responses, reference_api
from .batcher import RequestBatcher
from .errors import GenerationFailed, RequestError
from .openai_errors import OpenAIError, as_openai_error, is_openai_path
from .schema import MAX_ABS_ALPHA
from .state import Limits, ServerState


def create_app(
    pair,
    *,
    model_after: str,
    model_before: str,
    judge=None,
    limits: Limits | None = None,
    max_rows: int = SERVER_DEFAULTS.max_batch_rows,
    batch_wait_seconds: float = SERVER_DEFAULTS.batch_wait_ms / 1000,
    alpha: float = SERVER_DEFAULTS.alpha,
    seeded_decoding: str = SERVER_DEFAULTS.seeded_decoding,
) -> FastAPI:
    """A FastAPI app serving ``pair``; the defaults are ``serve``'s
    (:class:`~lda_monitor.config.server.ServerOptions`).

    ``alpha`` is the OpenAI routes' default amplification (model ``lda`` without an ``alpha``
    field); the reference endpoints keep their own per-request default. ``seeded_decoding``: how
    requests that send a seed are decoded in bfloat16/float16 (see :mod:`.batcher`).
    """
    if not abs(alpha) <= MAX_ABS_ALPHA:
        raise UserInputError(f"--alpha must be within +-{MAX_ABS_ALPHA:g}, got {alpha}")
    batcher = RequestBatcher(pair, max_rows=max_rows, wait_seconds=batch_wait_seconds,
                             seeded_decoding=seeded_decoding)
    state = ServerState(pair=pair, batcher=batcher, model_after=model_after, model_before=model_before,
                        judge=judge, limits=limits or Limits(), default_alpha=alpha)
    app = FastAPI(
        title="lda-monitor: Logit Diff Amplification API",
        description="Sample logits_after + alpha * (logits_after - logits_before); compatible with the "
                    "reference LDA server's endpoints, and OpenAI-compatible under /v1 (models 'lda', 'after', "
                    "'before').",
        lifespan=_lifespan,
    )
    app.state.lda = state
    for router in (reference_api.router, openai_api.router, openai_responses.router):
        app.include_router(router)
    for exc_type in _REFERENCE_HANDLERS:
        app.add_exception_handler(exc_type, _handle)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    batcher = app.state.lda.batcher
    batcher.start()
    try:
        yield
    finally:
        batcher.stop()


async def _refused(_request, exc: RequestError):
    return JSONResponse(status_code=422, content={"detail": exc.detail})


async def _failed(_request, exc: GenerationFailed):
    return JSONResponse(status_code=500, content={"detail": str(exc)})


async def _openai_error(_request, exc: OpenAIError):
    return exc.response()


# How the reference API answers each failure; the OpenAI API answers all of them in its own shape.
_REFERENCE_HANDLERS = {
    RequestError: _refused,
    GenerationFailed: _failed,
    RequestValidationError: request_validation_exception_handler,
    HTTPException: http_exception_handler,
    OpenAIError: _openai_error,
}


async def _handle(request, exc: Exception):
    """Each failure in the shape of the API whose path was asked for."""
    if is_openai_path(request.url.path):
        return as_openai_error(request, exc).response()
    reference_handler = next(h for t, h in _REFERENCE_HANDLERS.items() if isinstance(exc, t))
    return await reference_handler(request, exc)
