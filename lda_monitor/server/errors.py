"""The server's own failures, shared by the reference LDA API (:mod:`.app`) and the OpenAI API
(:mod:`.openai_api`); each front end maps them to its own error shape."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses, naming the offending field (the reference API answers 422
    like pydantic's own errors, the OpenAI API 400 with ``param``)."""

    def __init__(self, loc: list, message: str, kind: str = "value_error"):
        super().__init__(message)
        self.detail = [{"type": kind, "loc": ["body", *loc], "msg": message}]


class GenerationFailed(Exception):
    """The engine raised while serving a request: 500 with the message; the server serves on."""
