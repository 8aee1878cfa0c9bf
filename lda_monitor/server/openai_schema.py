"""Request bodies of the OpenAI-compatible routes (``/v1/...``), as the OpenAI API defines them.

Only what this server acts on is declared; every other field (``user``, ``frequency_penalty``,
``logit_bias``, ...) is accepted and ignored, as OpenAI-compatible servers do, so clients that
always send them keep working. The sampler's values are checked by the engine's rules (see
:mod:`.sampler`; so ``temperature`` has no upper bound of 2); the other bounds are the OpenAI
API's where it has them (``n``, ``stop``, ``top_logprobs``) and the reference endpoints'
otherwise (``max_tokens`` up to ``schema.MAX_NEW_TOKENS``, ``|alpha|`` up to
``schema.MAX_ABS_ALPHA``); a value out of bounds is a 400 naming the field.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from .sampler import api_field
from .schema import MAX_ABS_ALPHA, MAX_NEW_TOKENS

# OpenAI's own bounds.
MAX_TOP_LOGPROBS = 20
MAX_STOP_SEQUENCES = 4


class TextPart(BaseModel):
    """One part of a multi-part message (what inspect_ai and newer SDKs send); text only."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="'developer' is OpenAI's newer name for 'system' and is rendered as one"
    )
    content: str | list[TextPart] | None = Field(None, description="null only for an assistant turn")

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class OpenAIRequest(BaseModel):
    """What every generating route shares (chat, completions, responses)."""

    chat_template: ClassVar[bool]  # rendered with the after model's chat template, or raw text
    MAX_TOKENS_FIELD: ClassVar[str]  # the route's name for the longest completion
    model: str = Field(description="'lda' (amplified at alpha), 'after' (alpha 0) or 'before' (alpha -1)")
    temperature: float = api_field("temperature", 1.0, "; 0: greedy (argmax of the amplified logits)")
    top_p: float = api_field("top_p", 1.0)
    seed: int | None = Field(
        None, ge=-(2**63), lt=2**63,
        description="same seed and fields give the same completions, alone or batched with other requests",
    )
    stream: bool = False
    alpha: float | None = Field(
        None, ge=-MAX_ABS_ALPHA, le=MAX_ABS_ALPHA,
        description="amplification for model 'lda' (extra_body={'alpha': ...}); default: the server's --alpha",
    )

    def max_new_tokens(self) -> int | None:
        return getattr(self, self.MAX_TOKENS_FIELD)

    def sampler(self) -> dict:
        longest = self.max_new_tokens()
        return {"max_new_tokens": MAX_NEW_TOKENS if longest is None else longest, "greedy": self.temperature == 0,
                "temperature": self.temperature, "top_p": self.top_p, "stop_strings": self.stop_strings(),
                "chat_template": self.chat_template}

    def public_name(self, name: str) -> str:
        return {"max_new_tokens": self.MAX_TOKENS_FIELD, "stop_strings": "stop"}.get(name, name)

    def stop_strings(self) -> tuple[str, ...]:
        return ()


class OpenAISamplingFields(OpenAIRequest):
    """What both completion routes add."""

    MAX_TOKENS_FIELD: ClassVar[str] = "max_tokens"
    max_tokens: int | None = Field(None, le=MAX_NEW_TOKENS)
    n: int = Field(1, ge=1, description="completions per prompt (the server's --max-samples bounds it)")
    stop: str | list[str] | None = Field(None, description=f"up to {MAX_STOP_SEQUENCES} strings ending a completion")
    stream_options: dict | None = Field(None, description="{'include_usage': true} adds a final usage chunk")

    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class ChatCompletionRequest(OpenAISamplingFields):
    chat_template: ClassVar[bool] = True
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, le=MAX_NEW_TOKENS, description="supersedes max_tokens")
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description="needs logprobs: true")

    def max_new_tokens(self) -> int | None:
        return self.max_tokens if self.max_completion_tokens is None else self.max_completion_tokens

    def public_name(self, name: str) -> str:
        if name == "max_new_tokens" and self.max_completion_tokens is not None:
            return "max_completion_tokens"
        return super().public_name(name)


class CompletionRequest(OpenAISamplingFields):
    chat_template: ClassVar[bool] = False
    prompt: str | list[str] = Field(description="raw text, no chat template; a list gives n choices per prompt")
    max_tokens: int | None = Field(16, le=MAX_NEW_TOKENS, description="OpenAI's default: 16")
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description="alternatives per token")
    echo: bool = Field(False, description="not supported: the prompt's own log-probs are not computed")


class InputPart(BaseModel):
    """A text part of a Responses API message (``input_text``; ``output_text`` in an assistant turn)."""

    type: Literal["input_text", "output_text", "text"]
    text: str


class InputMessage(BaseModel):
    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="'developer' is rendered as a system turn"
    )
    content: str | list[InputPart]

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content


class ResponseRequest(OpenAIRequest):
    """``POST /v1/responses``: OpenAI's Responses API, text in and text out (what inspect_ai's
    ``openai/<name>`` provider sends)."""

    input: str | list[InputMessage] = Field(
        description="a user message as text, or a list of messages (text parts only)", min_length=1
    )
    chat_template: ClassVar[bool] = True
    MAX_TOKENS_FIELD: ClassVar[str] = "max_output_tokens"
    instructions: str | None = Field(None, description="a system message placed before the input")
    max_output_tokens: int | None = Field(None, le=MAX_NEW_TOKENS)

    def messages(self) -> list[dict]:
        """The conversation to render: ``instructions`` as a system turn, then ``input``."""
        turns = [{"role": "user", "content": self.input}] if isinstance(self.input, str) else [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.input]
        return ([{"role": "system", "content": self.instructions}] if self.instructions else []) + turns
