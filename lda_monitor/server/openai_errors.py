"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, for everything the
server refuses or fails on a ``/v1`` path: its own refusals, FastAPI's validation errors (400
rather than 422, so SDKs raise ``BadRequestError``), engine failures (500) and unknown routes
(404, never FastAPI's ``{"detail": "Not Found"}``)."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .errors import GenerationFailed, RequestError

PREFIX = "/v1"


def is_openai_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


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


def _from_details(details: list[dict]) -> OpenAIError:
    fields = [_field(d["loc"]) for d in details]
    message = "; ".join(f"{f}: {d['msg']}" if f else d["msg"] for f, d in zip(fields, details, strict=True))
    return OpenAIError(400, message or "invalid request", param=next((f for f in fields if f), None))


def as_openai_error(request, exc: Exception) -> OpenAIError:
    """``exc`` (one of the server's exceptions) in OpenAI's terms."""
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, RequestValidationError):
        return _from_details(exc.errors())
    if isinstance(exc, RequestError):
        return _from_details(exc.detail)
    if isinstance(exc, GenerationFailed):
        return OpenAIError(500, str(exc), kind="server_error")
    if isinstance(exc, HTTPException) and exc.status_code == 404:
        return OpenAIError(404, f"Invalid URL ({request.method} {request.url.path}): this server has "
                                "/v1/models, /v1/chat/completions, /v1/completions and /v1/responses",
                           code="unknown_url")
    status = getattr(exc, "status_code", 500)
    return OpenAIError(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', exc)}")
