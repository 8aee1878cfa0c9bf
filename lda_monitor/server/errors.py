"""The server's own failures, shared by the reference LDA API (:mod:`.reference_api`) and the
OpenAI API (:mod:`.openai_api`); each API answers them in its own error shape (:mod:`.app`)."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses, naming the offending fields (the reference API answers 422
    like pydantic's own errors, the OpenAI API 400 with ``param``)."""

    def __init__(self, loc: list, message: str, kind: str = "value_error"):
        super().__init__(message)
        self.detail = [{"type": kind, "loc": ["body", *loc], "msg": message}]

    @classmethod
    def many(cls, problems: list[tuple[list, str]]) -> RequestError:
        """One error listing several (loc, message) problems."""
        error = cls(*problems[0])
        error.detail += [{"type": "value_error", "loc": ["body", *loc], "msg": message}
                         for loc, message in problems[1:]]
        return error


class GenerationFailed(Exception):
    """The engine raised while serving a request: 500 with the message; the server serves on."""
