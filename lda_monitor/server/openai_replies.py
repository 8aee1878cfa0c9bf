"""Reply bodies of the OpenAI-compatible routes, as the OpenAI API defines them: the shapes the
``openai`` SDK parses (``openai.types.Model``, ``openai.types.chat.ChatCompletion``,
``openai.types.Completion``), so FastAPI validates every reply against them and the OpenAPI
schema at ``/docs`` is this code. Two extras on every reply say how to reproduce it: ``alpha``
and ``seed`` (SDKs keep unknown fields). Streamed replies are server-sent events of the chunk and event
models below (``openai.types.chat.ChatCompletionChunk``, ``openai.types.Completion`` as a chunk,
``openai.types.responses.ResponseStreamEvent``), each validated before it is sent; a field left
unset is left out of the event, as OpenAI streams it (``usage`` only with ``include_usage``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FinishReason = Literal["stop", "length"]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Usage(BaseModel):
    prompt_tokens: int = Field(description="a prompt sampled n times counts once")
    completion_tokens: int
    total_tokens: int


class Reply(BaseModel):
    """What every reply and chunk carries (:func:`~.openai_format.envelope`)."""

    id: str
    object: str
    created: int
    model: str = Field(description="the side that answered: 'lda', 'after' or 'before'")
    system_fingerprint: str
    alpha: float = Field(description="the amplification sampled at (0: the after model, -1: the before model)")
    seed: int = Field(description="the sampling seed: the same request with this seed gives the same reply")


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(Reply):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason
    logprobs: CompletionLogprobs | None


class Completion(Reply):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list = []
    logprobs: list = []


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"]


class InputTokensDetails(BaseModel):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class Reasoning(BaseModel):
    effort: str | None = None
    summary: str | None = None


class TextFormat(BaseModel):
    format: dict = {"type": "text"}


class Response(BaseModel):
    """The Responses API's ``response`` object (``openai.types.responses.Response``): one
    assistant message; tools, reasoning and storage are never used here."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete"]
    error: None = None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[OutputMessage]
    output_text: str
    parallel_tool_calls: bool = False
    previous_response_id: None = None
    reasoning: Reasoning
    store: bool = False
    temperature: float | None
    text: TextFormat
    tool_choice: Literal["none"] = "none"
    tools: list = []
    top_p: float | None
    truncation: Literal["disabled"] = "disabled"
    user: None = None
    metadata: dict = {}
    usage: ResponseUsage | None
    alpha: float = Field(description="the amplification sampled at (0: the after model, -1: the before model)")
    seed: int = Field(description="the sampling seed: the same request with this seed gives the same reply")


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(Reply):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChunkChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class CompletionChunk(Reply):
    """A streamed completion's chunk: OpenAI sends it as a ``text_completion`` object."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChunkChoice]
    usage: Usage | None = None


class ResponseEvent(BaseModel):
    """What every event of a streamed response carries."""

    type: str
    sequence_number: int


class ResponseLifecycleEvent(ResponseEvent):
    type: Literal["response.created", "response.in_progress", "response.completed", "response.incomplete"]
    response: Response


class OutputItemEvent(ResponseEvent):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputMessage


class ContentPartEvent(ResponseEvent):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class TextDeltaEvent(ResponseEvent):
    type: Literal["response.output_text.delta"]
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list = []


class TextDoneEvent(ResponseEvent):
    type: Literal["response.output_text.done"]
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list = []
